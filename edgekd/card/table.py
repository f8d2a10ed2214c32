"""What ``edgekd build`` prints at its end, read from the card: the one-row-per-artifact table,
what each stage did, and every release gate (:func:`format_summary`)::

    model    kind   top-1   ...  agreement  size MB
    teacher  torch  0.7344  ...          -      0.4
    onnx     onnx   0.6953  ...     1.0000      0.4

    stages: teacher trained, baseline reused, student trained, model.onnx exported, ...
    gates: 3 of 3 pass
      pass  onnx_matches_torch on onnx = 1.0000 (needs >= 0.999): argmax agreement with the torch student
    bundle: runs/tiny/bundle
"""

from __future__ import annotations

from pathlib import Path

from edgekd.fairness.metric_table import METRICS

__all__ = [
    "summary_rows",
    "summary_headers",
    "format_table",
    "format_stages",
    "format_gate",
    "format_summary",
]


def summary_rows(card: dict) -> list[dict]:
    """Model, kind, every metric of the metric table, agreement with the torch student (exported
    artifacts; ``None`` for the torch models), and size, from a card."""
    return [
        {
            "model": name,
            "kind": entry["kind"],
            **{m.key: m.read(entry["metrics"]) for m in METRICS.values()},
            "agreement": (entry.get("vs_student") or {}).get("prediction_agreement"),
            "size_mb": entry["size_bytes"] / 1e6,
        }
        for name, entry in card["models"].items()
    ]


def summary_headers() -> dict[str, str]:
    """Column headers of :func:`summary_rows` (``agreement``: the share of test images on which
    the artifact predicts what the torch student predicts)."""
    return {
        "model": "model",
        "kind": "kind",
        **{m.key: m.label for m in METRICS.values()},
        "agreement": "agreement",
        "size_mb": "size MB",
    }


# What a stage's status (edgekd.stages.Stage.run, the training stages' "resumed") says to a user.
_STAGE_WORDS = {
    "export": ("model.onnx", {"trained": "exported"}),
    "artifacts": ("artifacts", {"trained": "built"}),
    "tensorrt_check": ("TensorRT check", {"trained": "run"}),
}


def format_stages(status: dict[str, str]) -> str:
    """One line: what each stage of the build did (``teacher trained``, ``model.onnx exported``,
    ``TensorRT check reused``), and what reused means."""
    parts = []
    for stage, state in status.items():
        name, words = _STAGE_WORDS.get(stage, (stage, {}))
        parts.append(f"{name} {words.get(state, state)}")
    note = "; reused: inputs unchanged since an earlier build" if "reused" in status.values() else ""
    return "stages: " + ", ".join(parts) + note


def format_gate(gate: dict) -> str:
    """One line for a gate of the card: pass or FAIL, name, artifact, value and threshold."""
    value = "undefined" if gate["value"] is None else _cell(gate["value"])
    verdict = "pass" if gate["passed"] else "warn" if gate.get("on_miss") == "warn" else "FAIL"
    return (
        f"{verdict}  {gate['name']} on {gate['artifact']} = {value} "
        f"(needs {gate['comparison']} {gate['threshold']}): {gate['metric']}"
        + (f"; {gate['detail']}" if gate.get("detail") and not gate["passed"] else "")
    )


def format_summary(card: dict, stage_status: dict[str, str], bundle_dir: str | Path) -> str:
    """The end of ``edgekd build``: the table, the stages line, every gate, the bundle."""
    gates = card.get("gates", [])
    passed = sum(gate["passed"] for gate in gates)
    warned = sum(not gate["passed"] and gate.get("on_miss") == "warn" for gate in gates)
    counted = f"gates: {passed} of {len(gates)} pass" + (f", {warned} only warn" if warned else "")
    lines = [
        format_table(summary_rows(card)),
        "",
        format_stages(stage_status),
        counted if gates else "gates: none set (card.gates)",
    ]
    lines += [f"  {format_gate(gate)}" for gate in gates]
    lines.append(f"bundle: {bundle_dir}")
    return "\n".join(lines)


_ONE_DECIMAL = {"size_mb"}


def _cell(value, key: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if key in _ONE_DECIMAL or abs(value) >= 10 else f"{value:.4f}"
    return str(value)


def format_table(rows: list[dict], headers: dict[str, str] | None = None) -> str:
    """Plain aligned text columns; numbers right-aligned, words left-aligned."""
    headers = headers or summary_headers()
    keys = [k for k in headers if any(k in r for r in rows)]
    cells = [[headers[k] for k in keys]] + [[_cell(r.get(k), k) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    text = [all(isinstance(r.get(k), str) for r in rows if r.get(k) is not None) for k in keys]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.ljust(w) if i == 0 or n == 0 or text[i] else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
