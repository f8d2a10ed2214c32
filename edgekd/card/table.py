"""The one-row-per-artifact summary table printed by ``edgekd build`` (and read from a card)."""

from __future__ import annotations

from edgekd.fairness.metric_table import METRICS

__all__ = ["summary_rows", "summary_headers", "format_table"]


def summary_rows(card: dict) -> list[dict]:
    """Model, kind, every metric of the metric table, and size, from a card."""
    return [{"model": name, "kind": entry["kind"],
             **{m.key: m.read(entry["metrics"]) for m in METRICS.values()},
             "size_mb": entry["size_bytes"] / 1e6}
            for name, entry in card["models"].items()]


def summary_headers() -> dict[str, str]:
    """Column headers of :func:`summary_rows`."""
    return {"model": "model", "kind": "kind", **{m.key: m.label for m in METRICS.values()},
            "size_mb": "size MB"}


_ONE_DECIMAL = {"size_mb"}


def _cell(value, key: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if key in _ONE_DECIMAL or abs(value) >= 10 else f"{value:.4f}"
    return str(value)


def format_table(rows: list[dict], headers: dict[str, str] | None = None) -> str:
    """Plain aligned text columns; numbers right-aligned."""
    headers = headers or summary_headers()
    keys = [k for k in headers if any(k in r for r in rows)]
    cells = [[headers[k] for k in keys]] + [[_cell(r.get(k), k) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.ljust(w) if i == 0 or n == 0 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
