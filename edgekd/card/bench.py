"""Bench results on the card: the one way they are added, and their table rows.

A card keeps results as ``card["bench"][<device id>][<backend>][<artifact file>]``; each result
is the ``edgekd.bench/v1`` dict that ``edgekd bench --json`` writes, less machine-local paths and
raw samples (:func:`card_entry`). :func:`add_bench_result` is the only change a card sees after
its build.
"""

from __future__ import annotations

import copy

__all__ = ["BENCH_HEADERS", "card_entry", "add_bench_result", "result_rows", "bench_rows"]

BENCH_HEADERS = {
    "device": "device", "backend": "backend", "artifact": "artifact", "batch": "batch",
    "p50_ms": "p50 ms", "p90_ms": "p90 ms", "p99_ms": "p99 ms", "mean_ms": "mean ms",
    "images_per_s": "images/s", "first_ms": "first ms", "peak_rss_mb": "peak RSS MB",
    "power_w": "power W", "mj_per_image": "mJ/image", "top1": "top-1",
}


def result_rows(result: dict, *, device: bool = False) -> list[dict]:
    """One row per batch size of a bench result; top-1 (from ``--eval``) on the first row."""
    rows = []
    for i, r in enumerate(result["results"]):
        lat = r["latency_ms"]
        power = r.get("power") or {}
        row = {
            "backend": result["backend"],
            "artifact": result["artifact"]["file"],
            "batch": r["batch"],
            "p50_ms": lat.get("p50"), "p90_ms": lat.get("p90"), "p99_ms": lat.get("p99"),
            "mean_ms": lat.get("mean"),
            "images_per_s": r.get("throughput_ips"),
            "first_ms": r.get("first_inference_ms"),
            "peak_rss_mb": r.get("peak_rss_mb"),
            "power_w": power.get("avg_w"),
            "mj_per_image": power.get("energy_per_image_mj"),
            "top1": (result.get("eval") or {}).get("top1") if i == 0 else None,
        }
        if device:
            row = {"device": result["device"]["id"], **row}
        rows.append(row)
    return rows


def bench_rows(card: dict) -> list[dict]:
    """Rows of every bench result in a card, device by device (for card.md)."""
    rows = []
    for by_backend in card.get("bench", {}).values():
        for by_artifact in by_backend.values():
            for result in by_artifact.values():
                rows += result_rows(result, device=True)
    return rows


def card_entry(result: dict) -> dict:
    """The part of a result a card keeps: all of it but machine-local paths and raw samples."""
    entry = {k: v for k, v in result.items() if k != "target"}
    entry["artifact"] = {k: v for k, v in result["artifact"].items() if k != "path"}
    entry["results"] = [{k: v for k, v in r.items() if k != "samples_ms"} for r in result["results"]]
    return entry


def add_bench_result(card: dict, result: dict) -> dict:
    """``card`` with ``result`` under ``bench[<device id>][<backend>][<artifact file>]``, replacing
    an earlier result of the same device, backend and artifact; the rest of the card is kept."""
    device, backend, artifact = result["device"]["id"], result["backend"], result["artifact"]["file"]
    bench = copy.deepcopy(card.get("bench") or {})
    bench.setdefault(device, {}).setdefault(backend, {})[artifact] = card_entry(result)
    return {**card, "bench": bench}
