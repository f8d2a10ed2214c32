"""Merge device results into a bundle: card.json, card.md (and card.html), manifest.json.

A bench result goes to ``card["bench"][<device id>][<backend>][<artifact file>]``, replacing an
earlier result of the same device, backend and artifact (:func:`update_card`,
:func:`update_card_all`); an engine built on the device is copied in with its model entry
(:func:`add_engine`). The bundle must verify before the update, so a refreshed manifest never
blesses a file changed by something else; the manifest keeps its name, version, engines map and
the library versions of the build that made it. The new card is rendered before anything is
written, so a card that cannot render leaves the bundle as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgekd.bench.runner import BENCH_SCHEMA
from edgekd.bundle.manifest import read_manifest, verify_bundle, write_manifest
from edgekd.card.bench import add_bench_result, add_engine_evaluation
from edgekd.card.io import CARD_JSON, CARD_MD, load_card
from edgekd.card.markdown import render_markdown
from edgekd.card.schema import check_card
from edgekd.errors import EdgeKDError
from edgekd.files import atomic_output, sha256_file, write_atomic, write_json

__all__ = ["load_result", "update_card", "update_card_all", "add_engine", "BENCH_ALL_SCHEMA"]

BENCH_ALL_SCHEMA = "edgekd.bench-all/v1"
CARD_HTML = "card.html"


def load_result(path: str | Path) -> dict:
    """Read a result written by ``edgekd bench --json`` (e.g. on a device) to merge it elsewhere:
    one ``edgekd.bench/v1`` result, or the ``edgekd.bench-all/v1`` results of ``bench --all``."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeKDError(f"--from-json: {path}: no such file") from None
    except ValueError as err:
        raise EdgeKDError(f"--from-json: {path}: not valid JSON ({err})") from None
    if not isinstance(result, dict) or result.get("schema") not in (BENCH_SCHEMA, BENCH_ALL_SCHEMA):
        raise EdgeKDError(f"--from-json: {path}: not an edgekd bench result (schema {BENCH_SCHEMA} "
                          f"or {BENCH_ALL_SCHEMA})")
    return result


def _check_artifact(bundle: Path, result: dict) -> None:
    file, digest = result["artifact"]["file"], result["artifact"].get("sha256")
    path = bundle / file
    if not path.is_file():
        raise EdgeKDError(f"{bundle}: has no {file}, the artifact this bench result measured")
    if digest != sha256_file(path):
        raise EdgeKDError(f"{bundle / file}: differs from the {file} the bench result measured "
                          f"(sha256 {str(digest)[:12]}...); bench this bundle's artifact")


def _verified(bundle: Path) -> tuple[dict, dict]:
    """The card (checked against its schema) and manifest of a bundle that matches its manifest."""
    card = load_card(bundle)
    manifest = read_manifest(bundle)  # shape, size and containment checked
    problems = verify_bundle(bundle)
    if problems:
        raise EdgeKDError(f"{bundle}: does not match its manifest before the update ({problems[0]}"
                          f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); run "
                          f"`edgekd verify` and restore the bundle first")
    return card, manifest


def _rendered(bundle: Path, card: dict) -> dict[str, str]:
    """card.md (and card.html when the bundle has one) of ``card``, before anything is written."""
    out = {CARD_MD: render_markdown(card)}
    if (bundle / CARD_HTML).is_file():
        from edgekd.card.html import render_html

        plots = [bundle / p for p in card.get("plots", []) if (bundle / p).is_file()]
        out[CARD_HTML] = render_html(card, plots)
    return out


def _save(bundle: Path, card: dict, manifest: dict, rendered: dict[str, str], *,
          engines: dict | None = None) -> None:
    check_card(card, bundle / CARD_JSON)  # a malformed result never reaches the card
    write_json(bundle / CARD_JSON, card)
    for name, text in rendered.items():
        write_atomic(bundle / name, text)
    keep = {k: v for k, v in manifest.items() if k not in ("schema", "name", "version", "files")}
    if engines:
        keep["engines"] = {**(keep.get("engines") or {}), **engines}
    write_manifest(bundle, name=manifest.get("name", card.get("name")),
                   version=manifest.get("version", card.get("version")), extra=keep)


def _locked_change(bundle: Path, change, *, key: str | Path | None, log) -> dict:
    """``change()`` under the run folder's lock (:mod:`edgekd.lock`), then the signature:
    re-signed with the private ``key`` (whose signature must have held before the change), or
    removed, since a changed manifest invalidates it; ``log`` gets the line saying which."""
    from edgekd.bundle.signing import check_before_resign, signature_after_change
    from edgekd.lock import run_lock

    with run_lock(bundle.resolve().parent):
        if key is not None:
            check_before_resign(bundle, key)
        card = change()
        note = signature_after_change(bundle, key)
    if note and log is not None:
        log(note)
    return card


def update_card_all(bundle: str | Path, results: list[dict], *, key: str | Path | None = None,
                    log=None) -> dict:
    """Add every bench result of ``results`` to ``bundle``'s card (one verification, one write),
    under the folder's lock, re-signing with ``key`` or dropping the signature.

    Each result must have measured this bundle's artifact (same file name and sha256).

    Returns
    -------
    dict
        The updated card.
    """
    bundle = Path(bundle)

    def change() -> dict:
        card, manifest = _verified(bundle)
        for result in results:
            _check_artifact(bundle, result)
            card = add_bench_result(card, result)
        _save(bundle, card, manifest, _rendered(bundle, card))
        return card

    return _locked_change(bundle, change, key=key, log=log)


def update_card(bundle: str | Path, result: dict, *, key: str | Path | None = None, log=None) -> dict:
    """Add ``result`` to ``bundle``'s card.json and card.md and refresh manifest.json.

    The result must have measured this bundle's artifact (same file name and sha256).

    Returns
    -------
    dict
        The updated card.
    """
    return update_card_all(bundle, [result], key=key, log=log)


def add_engine(bundle: str | Path, engine: Path, *, name: str, entry: dict, info: dict,
               file: str | None = None, key: str | Path | None = None, log=None) -> dict:
    """Copy the engine file ``engine`` into ``bundle`` (as ``file``, default its name), add its
    model entry to the card (:func:`edgekd.card.bench.add_engine_evaluation`) and its
    ``engine_info`` to the manifest's ``engines`` map; card.md and card.html are re-rendered.

    Returns
    -------
    dict
        The updated card.
    """
    bundle, engine = Path(bundle), Path(engine)
    file = file or engine.name

    def change() -> dict:
        card, manifest = _verified(bundle)
        card = add_engine_evaluation(card, name, {**entry, "file": file})
        check_card(card, bundle / CARD_JSON)
        rendered = _rendered(bundle, card)
        with atomic_output(bundle / file) as tmp:
            shutil.copyfile(engine, tmp)
        _save(bundle, card, manifest, rendered, engines={file: info})
        return card

    return _locked_change(bundle, change, key=key, log=log)
