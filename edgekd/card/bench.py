"""Bench results as table rows: one per batch size of a result, or of every result in a card.

A card keeps results as ``card["bench"][<device id>][<backend>][<artifact file>]``; each result
is the ``edgekd.bench/v1`` dict that ``edgekd bench --json`` writes.
"""

from __future__ import annotations

__all__ = ["BENCH_HEADERS", "result_rows", "bench_rows"]

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
