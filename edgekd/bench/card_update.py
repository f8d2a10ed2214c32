"""Merge device results into a bundle: card.json, card.md (and card.html), manifest.json.

A bench result goes to ``card["bench"][<device id>][<backend>][<artifact file>]``, replacing an
earlier result of the same device, backend and artifact (:func:`update_card`,
:func:`update_card_all`); an engine built on the device is copied in with its model entry
(:func:`add_engine`). The bundle must verify before the update, so a refreshed manifest never
blesses a file changed by something else; the manifest keeps its name, version, engines map and
the library versions of the build that made it. The new card is rendered before anything is
written, so a card that cannot render leaves the bundle as it was. Each update is one
transaction (:mod:`edgekd.bundle.transaction`: a staged copy, a journal, one swap, then the
tarball), so a kill or a full disk leaves the old bundle or the new one, and the next command
finishes an interrupted update. A bench result read from a file is checked for every field the
card reads, and its ``artifact.file`` must name a file of the bundle (:mod:`edgekd.paths`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from edgekd.bench.runner import BENCH_SCHEMA
from edgekd.bundle.manifest import manifest_problems, read_manifest
from edgekd.card.bench import add_bench_result, add_engine_evaluation, with_step
from edgekd.card.io import CARD_JSON, CARD_MD, card_text, load_card, non_finite_path
from edgekd.card.markdown import render_markdown
from edgekd.card.schema import check_card, shorten
from edgekd.errors import EdgeKDError
from edgekd.files import atomic_output, sha256_file, write_atomic, write_json
from edgekd.paths import canonical_relpath, inside, special_file

__all__ = ["load_result", "check_result", "update_card", "update_card_all", "add_engine", "BENCH_ALL_SCHEMA"]

BENCH_ALL_SCHEMA = "edgekd.bench-all/v1"
MAX_RESULT_BYTES = 64 << 20
CARD_HTML = "card.html"


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def load_result(path: str | Path) -> dict:
    """Read a result written by ``edgekd bench --json`` (e.g. on a device) to merge it elsewhere:
    one ``edgekd.bench/v1`` result, or the ``edgekd.bench-all/v1`` results of ``bench --all``.
    Every result is checked for the fields the table and the card read (one line naming the
    first missing or mistyped one, never a ``KeyError``)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a device or a FIFO (followed through a symlink)
        kind = special_file(os.path.realpath(path)) or "not a regular file"
        raise EdgeKDError(f"--from-json: {path}: {kind}, not a result file")
    try:
        if path.stat().st_size > MAX_RESULT_BYTES:
            raise EdgeKDError(
                f"--from-json: {path}: above the {MAX_RESULT_BYTES} bytes a bench result may have"
            )
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeKDError(f"--from-json: {path}: no such file") from None
    except (ValueError, RecursionError) as err:
        raise EdgeKDError(f"--from-json: {path}: not valid JSON ({shorten(err)})") from None
    except OSError as err:
        raise EdgeKDError(f"--from-json: {path}: cannot be read ({err.strerror})") from None
    if not isinstance(result, dict) or result.get("schema") not in (BENCH_SCHEMA, BENCH_ALL_SCHEMA):
        raise EdgeKDError(
            f"--from-json: {path}: not an edgekd bench result (schema {BENCH_SCHEMA} or {BENCH_ALL_SCHEMA})"
        )
    if result["schema"] == BENCH_ALL_SCHEMA:
        results = result.get("results")
        if (
            not isinstance(results, list)
            or not isinstance(result.get("device"), dict)
            or not isinstance(result["device"].get("id"), str)
        ):
            raise EdgeKDError(
                f"--from-json: {path}: an {BENCH_ALL_SCHEMA} result needs device.id and a list of results"
            )
        for i, one in enumerate(results):
            check_result(one, f"--from-json: {path}: results[{i}]")
    else:
        check_result(result, f"--from-json: {path}")
    return result


_NUMBER = {"type": ["number", "null"]}
_TEXT = {"type": ["string", "null"], "maxLength": 1000}
_COUNT = {"type": ["integer", "null"]}
_SHOWN = {  # what the bench table and its lines read beyond the card's bench_result (all optional)
    "type": "object",
    "properties": {
        "device": {
            "type": "object",
            "properties": {
                "cpu": {
                    "type": "object",
                    "properties": {"model": _TEXT, "usable_cores": _COUNT, "logical_cores": _COUNT},
                },
                "os": _TEXT,
                "jetson": {
                    "type": ["object", "null"],
                    "properties": {
                        "model": _TEXT,
                        "l4t": _TEXT,
                        "jetpack": _TEXT,
                        "power_mode": _TEXT,
                        "clocks_locked": {"type": ["boolean", "null"]},
                    },
                },
                "gpus": {
                    "type": ["array", "null"],
                    "maxItems": 64,
                    "items": {
                        "type": "object",
                        "properties": {"name": _TEXT, "memory_total_mb": _NUMBER, "driver": _TEXT},
                    },
                },
            },
        },
        "runtime": {
            "type": ["object", "null"],
            "properties": {
                "name": _TEXT,
                "version": _TEXT,
                "threads": _COUNT,
                "providers": {"type": ["array", "null"], "maxItems": 16, "items": {"type": "string"}},
            },
        },
        "session_s": _NUMBER,
        "artifact": {"type": "object", "properties": {"size_bytes": _COUNT, "sha256": _TEXT}},
        "eval": {
            "type": ["object", "null"],
            "properties": {
                "n": _COUNT,
                "build_top1": _NUMBER,
                "top1_change_vs_build": _NUMBER,
                "agreement": {"type": ["object", "null"], "properties": {"prediction_agreement": _NUMBER}},
                "compression_step": {
                    "type": "object",
                    "required": ["step", "before", "after", "measured_on"],
                    "properties": {
                        key: {"type": "string", "maxLength": 1000}
                        for key in ("step", "before", "after", "measured_on")
                    },
                },
            },
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "power": {
                        "type": ["object", "null"],
                        "properties": {
                            "peak_w": _NUMBER,
                            "samples": _COUNT,
                            "measured": _TEXT,
                            "note": _TEXT,
                        },
                    },
                    "throughput_ips": _NUMBER,
                    "first_inference_ms": _NUMBER,
                    "peak_rss_mb": _NUMBER,
                    "gpu_memory_mb": _NUMBER,
                },
            },
        },
    },
}


def check_result(result: object, where: str) -> dict:
    """``result`` if it has every field a card reads (the card schema's ``bench_result``, plus
    ``artifact.sha256`` and finite numbers) and every field the bench table and its lines read
    is of its type where present (:data:`_SHOWN`), else one line naming the first that is not."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    from edgekd.card.schema import card_schema

    schema = {"allOf": [card_schema()["$defs"]["bench_result"], _SHOWN], "$defs": card_schema()["$defs"]}
    error = best_match(Draft202012Validator(schema).iter_errors(result))
    if error is not None:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise EdgeKDError(
            f"{where}: {key.lstrip('.') or '(top)'}: {shorten(error.message)} (not an edgekd bench result)"
        )
    if not isinstance(result["artifact"].get("sha256"), str):
        raise EdgeKDError(
            f"{where}: artifact.sha256 is missing; a result names the sha256 of the file it measured"
        )
    found = non_finite_path(result)
    if found:
        raise EdgeKDError(f"{where}: {found} is not a finite number")
    return result


def _check_artifact(bundle: Path, result: dict) -> None:
    """The result measured this bundle's file: its name a canonical path inside the bundle
    (checked before any path is made from it), listed in the manifest, same sha256."""
    where = "bench result artifact.file"
    file = canonical_relpath(result["artifact"]["file"], listed_in=where)
    path = inside(file, bundle, listed_in=where)
    digest = result["artifact"].get("sha256")
    if file not in read_manifest(bundle)["files"] or not path.is_file():
        raise EdgeKDError(f"{bundle}: has no {file}, the artifact this bench result measured")
    if digest != sha256_file(path):
        raise EdgeKDError(
            f"{bundle / file}: differs from the {file} the bench result measured "
            f"(sha256 {str(digest)[:12]}...); bench this bundle's artifact"
        )


def _verified(bundle: Path) -> tuple[dict, dict]:
    """The card (checked against its schema) and manifest of a bundle that matches its manifest."""
    card = load_card(bundle)
    manifest = read_manifest(bundle)  # shape, size and containment checked
    problems = manifest_problems(bundle)
    if problems:
        raise EdgeKDError(
            f"{bundle}: does not match its manifest before the update ({problems[0]}"
            f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); run "
            f"`edgekd verify` and restore the bundle first"
        )
    return card, manifest


def _rendered(bundle: Path, card: dict) -> dict[str, str]:
    """card.json, card.md (and card.html when the bundle has one) of ``card``, before anything
    is written: a card that cannot be written or rendered changes nothing."""
    check_card(card, bundle / CARD_JSON)  # a malformed result never reaches the card
    out = {CARD_JSON: card_text(card, bundle / CARD_JSON), CARD_MD: render_markdown(card)}
    if (bundle / CARD_HTML).is_file():
        from edgekd.card.html import render_html

        plots = [bundle / p for p in card.get("plots", []) if (bundle / p).is_file()]
        out[CARD_HTML] = render_html(card, plots)
    return out


def _write(staged: Path, rendered: dict[str, str], *, engines: dict | None = None) -> None:
    for name, text in rendered.items():
        write_atomic(staged / name, text)
    if engines:  # the manifest is rewritten on commit; the engines map is the one key added here
        from edgekd.bundle.manifest import MANIFEST

        manifest = read_manifest(staged)
        manifest["engines"] = {**(manifest.get("engines") or {}), **engines}
        write_json(staged / MANIFEST, manifest)


def _locked_change(bundle: Path, change, *, key: str | Path | None, log) -> dict:
    """Under the run folder's lock (:mod:`edgekd.lock`): finish an interrupted change, check the
    bundle, ``change(staged)`` on a staged copy, then commit it as one transaction
    (:func:`~edgekd.bundle.transaction.bundle_change`): manifest refreshed, signature re-signed
    with the private ``key`` (whose signature must have held before) or removed, tarball
    rewritten; ``log`` gets the line saying what became of the signature."""
    from edgekd.bundle.signing import check_before_resign
    from edgekd.bundle.transaction import bundle_change, recover, recover_missing
    from edgekd.lock import run_lock

    recover_missing(bundle, log=log)  # a bundle an interrupted swap left missing comes back
    if bundle.is_symlink() or not bundle.is_dir():
        raise EdgeKDError(f"{bundle}: not a bundle directory")
    with run_lock(bundle.resolve().parent):
        recover(bundle, log=log)
        if key is not None:
            check_before_resign(bundle, key)
        card, manifest = _verified(bundle)
        with bundle_change(bundle, key=key, log=log) as staged:
            card = change(card, staged)
    return card


def update_card_all(
    bundle: str | Path, results: list[dict], *, key: str | Path | None = None, log=_say
) -> dict:
    """Add every bench result of ``results`` to ``bundle``'s card (one verification, one
    transaction), under the folder's lock, re-signing with ``key`` or dropping the signature
    (``log`` gets the line saying which; default: stderr).

    Each result must have measured this bundle's artifact (same file name and sha256).

    Returns
    -------
    dict
        The updated card.
    """
    bundle = Path(bundle)

    def change(card: dict, staged: Path) -> dict:
        for i, result in enumerate(results):
            check_result(result, f"bench result {i + 1} of {len(results)}")
            _check_artifact(bundle, result)
            card = add_bench_result(card, result)
        _write(staged, _rendered(bundle, card))
        return card

    return _locked_change(bundle, change, key=key, log=log)


def update_card(bundle: str | Path, result: dict, *, key: str | Path | None = None, log=_say) -> dict:
    """Add ``result`` to ``bundle``'s card.json and card.md and refresh manifest.json.

    The result must have measured this bundle's artifact (same file name and sha256).

    Returns
    -------
    dict
        The updated card.
    """
    return update_card_all(bundle, [result], key=key, log=log)


def add_engine(
    bundle: str | Path,
    engine: Path,
    *,
    name: str,
    entry: dict,
    info: dict,
    file: str | None = None,
    step: dict | None = None,
    key: str | Path | None = None,
    log=_say,
) -> dict:
    """Copy the engine file ``engine`` into ``bundle`` (as ``file``, default its name), add its
    model entry to the card (:func:`edgekd.card.bench.add_engine_evaluation`), its compression
    ``step`` (student -> engine, on this device) to ``compression_by_group``, and its
    ``engine_info`` to the manifest's ``engines`` map; card.md and card.html are re-rendered.

    Returns
    -------
    dict
        The updated card.
    """
    bundle, engine = Path(bundle), Path(engine)
    file = canonical_relpath(file or engine.name, listed_in="engine file")
    inside(file, bundle, listed_in="engine file")

    def change(card: dict, staged: Path) -> dict:
        card = with_step(add_engine_evaluation(card, name, {**entry, "file": file}), step)
        rendered = _rendered(bundle, card)
        with atomic_output(staged / file) as tmp:
            shutil.copyfile(engine, tmp)
        _write(staged, rendered, engines={file: info})
        return card

    return _locked_change(bundle, change, key=key, log=log)
