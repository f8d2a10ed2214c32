"""Merge a bench result into a bundle's card, re-render card.md and refresh the manifest.

The result goes to ``card["bench"][<device id>][<backend>][<artifact file>]``, replacing an
earlier result of the same device, backend and artifact. The bundle must verify before the
update, so a refreshed manifest never blesses a file changed by something else; the manifest
keeps its name, version and the library versions of the build that made it.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.bench.runner import BENCH_SCHEMA
from edgekd.bundle.manifest import MANIFEST, verify_bundle, write_manifest
from edgekd.card.markdown import render_markdown
from edgekd.card.schema import check_card, load_card
from edgekd.errors import EdgeKDError
from edgekd.stages import sha256_file, write_atomic, write_json

__all__ = ["card_entry", "load_result", "update_card", "merge_result"]


def card_entry(result: dict) -> dict:
    """The part of a result a card keeps: all of it but machine-local paths and raw samples."""
    entry = {k: v for k, v in result.items() if k != "target"}
    entry["artifact"] = {k: v for k, v in result["artifact"].items() if k != "path"}
    entry["results"] = [{k: v for k, v in r.items() if k != "samples_ms"} for r in result["results"]]
    return entry


def _read(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeKDError(f"{path.parent}: no {path.name}; --update-card needs an edgekd bundle "
                          f"with {what}") from None
    except ValueError as err:
        raise EdgeKDError(f"{path}: not valid JSON ({err})") from None


def load_result(path: str | Path) -> dict:
    """Read a result written by ``edgekd bench --json`` (e.g. on a device) to merge it elsewhere."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeKDError(f"--from-json: {path}: no such file") from None
    except ValueError as err:
        raise EdgeKDError(f"--from-json: {path}: not valid JSON ({err})") from None
    if not isinstance(result, dict) or result.get("schema") != BENCH_SCHEMA:
        raise EdgeKDError(f"--from-json: {path}: not an edgekd bench result (schema {BENCH_SCHEMA})")
    return result


def _check_artifact(bundle: Path, result: dict) -> None:
    file, digest = result["artifact"]["file"], result["artifact"].get("sha256")
    path = bundle / file
    if not path.is_file():
        raise EdgeKDError(f"{bundle}: has no {file}, the artifact this bench result measured")
    if digest != sha256_file(path):
        raise EdgeKDError(f"{bundle / file}: differs from the {file} the bench result measured "
                          f"(sha256 {str(digest)[:12]}...); bench this bundle's artifact")


def update_card(bundle: str | Path, result: dict, *, key: str | Path | None = None,
                log=None) -> dict:
    """:func:`merge_result` under the run folder's lock (:mod:`edgekd.lock`), then the signature:
    re-signed with the private ``key`` (whose signature must have held before the update), or
    removed, since a changed manifest invalidates it; ``log`` gets the line saying which."""
    from edgekd.bundle.signing import check_before_resign, signature_after_change
    from edgekd.lock import run_lock

    bundle = Path(bundle)
    with run_lock(bundle.resolve().parent):
        if key is not None:
            check_before_resign(bundle, key)
        card = merge_result(bundle, result)
        note = signature_after_change(bundle, key)
    if note and log is not None:
        log(note)
    return card


def merge_result(bundle: str | Path, result: dict) -> dict:
    """Add ``result`` to ``bundle``'s card.json and card.md and refresh manifest.json.

    The result must have measured this bundle's artifact (same file name and sha256).

    Returns
    -------
    dict
        The updated card.
    """
    bundle = Path(bundle)
    card = load_card(bundle)
    manifest = _read(bundle / MANIFEST, MANIFEST)
    problems = verify_bundle(bundle)
    if problems:
        raise EdgeKDError(f"{bundle}: does not match its manifest before the update ({problems[0]}"
                          f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); run "
                          f"`edgekd verify` and restore the bundle first")
    _check_artifact(bundle, result)
    device, backend, artifact = result["device"]["id"], result["backend"], result["artifact"]["file"]
    bench = card.get("bench") or {}
    bench.setdefault(device, {}).setdefault(backend, {})[artifact] = card_entry(result)
    card["bench"] = bench
    check_card(card, bundle / "card.json")  # a malformed result never reaches the card
    markdown = render_markdown(card)  # before writing anything: a card that cannot render stays as is
    write_json(bundle / "card.json", card)
    write_atomic(bundle / "card.md", markdown)
    keep = {k: v for k, v in manifest.items() if k not in ("schema", "name", "version", "files")}
    write_manifest(bundle, name=manifest.get("name", card.get("name")),
                   version=manifest.get("version", card.get("version")), extra=keep)
    return card
