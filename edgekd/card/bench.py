"""Device results on the card: the only two ways a card changes after its build, and their rows.

- :func:`add_bench_result`: a bench result under
  ``card["bench"][<device id>][<backend>][<artifact file>]``; each result is the
  ``edgekd.bench/v1`` dict that ``edgekd bench --json`` writes, less machine-local paths and raw
  samples (:func:`card_entry`); the compression step its evaluation made (``eval.compression_step``:
  student -> the artifact, on this device) goes to ``card["compression_by_group"]``.
- :func:`add_engine_evaluation`: a TensorRT engine built and evaluated on the device
  (``edgekd engine``) as one more model entry, with its release gates.

Table columns of on-device metrics come from the metric table. Each latency is shown as its
median (p50) with two spreads: p10-p90 of the timed calls, and the range of the medians of the
timing loop's repeats (results from before repeats show ``-`` there).
"""

from __future__ import annotations

import copy
import math

from edgekd.fairness.metric_table import METRICS

__all__ = [
    "BENCH_HEADERS",
    "bench_headers",
    "card_entry",
    "add_bench_result",
    "add_engine_evaluation",
    "with_step",
    "result_rows",
    "bench_rows",
    "latency_cells",
    "ms_range",
]

BENCH_HEADERS = {
    "device": "device",
    "backend": "backend",
    "artifact": "artifact",
    "batch": "batch",
    "p50_ms": "p50 ms",
    "p10_p90_ms": "p10-p90 ms",
    "repeat_p50_ms": "p50 of repeats",
    "p90_ms": "p90 ms",
    "p99_ms": "p99 ms",
    "mean_ms": "mean ms",
    "images_per_s": "images/s",
    "first_ms": "first ms",
    "peak_rss_mb": "peak RSS MB",
    "power_w": "power W",
    "mj_per_image": "mJ/image",
}
"""Timing columns; :func:`bench_headers` adds the metric table's and agreement."""


def _significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits without an exponent: 1.29, 14.5, 173, 0.0523."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def ms_range(low, high) -> str | None:
    """``"1.10-1.40"``: a latency range in ms (3 significant digits), or None without both ends.

    >>> ms_range(1.1023, 1.4012)
    '1.10-1.40'
    """
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return None
    return f"{_significant(low)}-{_significant(high)}"


def latency_cells(timing: dict) -> dict[str, str | None]:
    """The spread columns of one batch size's timing: ``p10_p90_ms`` (p10 to p90 of the timed
    calls) and ``repeat_p50_ms`` (lowest to highest median of the repeats)."""
    lat = timing.get("latency_ms") or {}
    medians = timing.get("repeat_p50_ms")
    medians = [m for m in medians if isinstance(m, (int, float))] if isinstance(medians, list) else []
    return {
        "p10_p90_ms": ms_range(lat.get("p10"), lat.get("p90")),
        "repeat_p50_ms": ms_range(min(medians), max(medians)) if medians else None,
    }


def bench_headers() -> dict[str, str]:
    """Columns of :func:`result_rows`: timing, every metric of the metric table, agreement."""
    return {**BENCH_HEADERS, **{m.key: m.label for m in METRICS.values()}, "agreement": "agree model.onnx"}


def result_rows(result: dict, *, device: bool = False) -> list[dict]:
    """One row per batch size of a bench result; the metrics (from ``--eval``) on the first row."""
    rows = []
    for i, r in enumerate(result["results"]):
        lat = r["latency_ms"]
        power = r.get("power") or {}
        row = {
            "backend": result["backend"],
            "artifact": result["artifact"]["file"],
            "batch": r["batch"],
            "p50_ms": lat.get("p50"),
            **latency_cells(r),
            "p90_ms": lat.get("p90"),
            "p99_ms": lat.get("p99"),
            "mean_ms": lat.get("mean"),
            "images_per_s": r.get("throughput_ips"),
            "first_ms": r.get("first_inference_ms"),
            "peak_rss_mb": r.get("peak_rss_mb"),
            "power_w": power.get("avg_w"),
            "mj_per_image": power.get("energy_per_image_mj"),
        }
        ev = (result.get("eval") or {}) if i == 0 else {}  # scored once, shown on the first row
        row.update({m.key: m.read(ev) for m in METRICS.values()})
        row["agreement"] = (ev.get("agreement") or {}).get("prediction_agreement")
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
    """The part of a result a card keeps: all of it but machine-local paths, raw samples and the
    compression step (kept once, in ``compression_by_group``)."""
    entry = {k: v for k, v in result.items() if k != "target"}
    if isinstance(entry.get("eval"), dict) and "compression_step" in entry["eval"]:
        entry["eval"] = {k: v for k, v in entry["eval"].items() if k != "compression_step"}
    entry["artifact"] = {k: v for k, v in result["artifact"].items() if k != "path"}
    entry["results"] = [{k: v for k, v in r.items() if k != "samples_ms"} for r in result["results"]]
    return entry


def add_bench_result(card: dict, result: dict) -> dict:
    """``card`` with ``result`` under ``bench[<device id>][<backend>][<artifact file>]``, replacing
    an earlier result of the same device, backend and artifact; the rest of the card is kept."""
    device, backend, artifact = result["device"]["id"], result["backend"], result["artifact"]["file"]
    bench = copy.deepcopy(card.get("bench") or {})
    bench.setdefault(device, {}).setdefault(backend, {})[artifact] = card_entry(result)
    return with_step({**card, "bench": bench}, (result.get("eval") or {}).get("compression_step"))


def with_step(card: dict, step: dict | None) -> dict:
    """``card`` with a device's compression step in ``compression_by_group`` (replacing the same
    before, after and device; the section made with the step's card settings if missing)."""
    if not isinstance(step, dict):
        return card
    from edgekd.card.compression import SECTION, put_step, step_settings

    out = dict(card)
    if SECTION in card:
        out[SECTION] = copy.deepcopy(card[SECTION])  # put_step changes the section in place
    put_step(out, copy.deepcopy(step), **step_settings(card))
    return out


def add_engine_evaluation(card: dict, name: str, entry: dict) -> dict:
    """``card`` with an engine built on the device as model ``name`` (``edgekd engine``).

    ``entry`` is a model entry (:meth:`edgekd.card.evaluation.Evaluation.card_entry` plus where
    it was built). An earlier model of the same file is replaced (an engine runs only where it
    was built, so the newest build of a file is the one the bundle holds), the build's "not
    shipped" note for that engine is dropped, and the release gates the card already checks
    (their thresholds from its gate entries) are evaluated on the new entry, replacing that
    model's earlier gates. The rest of the card is kept.
    """
    from edgekd.card.gates import evaluate_gates, gate_table

    models = {
        k: v
        for k, v in card["models"].items()
        if k != name and not (entry.get("file") and v.get("file") == entry["file"])
    }
    removed = set(card["models"]) - set(models)
    models[name] = copy.deepcopy(entry)
    thresholds = {}
    for gate in card.get("gates") or []:
        if gate["name"] in gate_table():
            thresholds.setdefault(gate["name"], gate["threshold"])
    only_new = {**card, "models": {k: v for k, v in models.items() if k in ("teacher", name)}}
    new_gates = [g for g in evaluate_gates(only_new, thresholds) if g["artifact"] == name]
    gates = [g for g in card.get("gates") or [] if g["artifact"] not in removed | {name}] + new_gates
    skipped = [s for s in card.get("skipped_artifacts") or [] if s.get("name") != name]
    out = {**card, "models": models, "gates": gates}
    if "skipped_artifacts" in card:
        out["skipped_artifacts"] = skipped
    return out
