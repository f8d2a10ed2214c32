"""Bootstrap confidence intervals for a model's headline metrics.

The test set is resampled with replacement ``resamples`` times (seeded, so the card is
reproducible) and each metric is recomputed per resample; the interval is the percentile
interval ``[q_{(1-level)/2}, q_{(1+level)/2}]`` of those values (Efron & Tibshirani 1993).

Per resample the metrics are computed from (class, group) counts
(:mod:`edgekd.fairness.counts`); the metrics with ``interval=True`` in the metric table
(:mod:`edgekd.fairness.metric_table`) get one.
"""

from __future__ import annotations

import numpy as np

from edgekd.fairness.counts import CellCounts
from edgekd.fairness.metric_table import METRICS

__all__ = ["headline_from_counts", "bootstrap_intervals"]


def headline_from_counts(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    *,
    num_classes: int,
    num_groups: int,
    min_support: int = 1,
    reference: CellCounts | None = None,
) -> dict:
    """Every metric of the table that has an interval, from one (resampled) evaluation
    (``reference``: the full evaluation, whose cell sizes decide what is measured)."""
    counts = CellCounts(
        y_true,
        y_pred,
        groups,
        num_classes=num_classes,
        num_groups=num_groups,
        min_support=min_support,
        reference=reference,
    )
    return {m.key: m.from_counts(counts) for m in METRICS.values() if m.interval}


def bootstrap_intervals(
    y_true,
    y_pred,
    groups,
    *,
    num_classes: int,
    num_groups: int,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_support: int = 1,
) -> dict:
    """Percentile bootstrap intervals: ``{metric: {"low", "high"}}`` plus the settings used.

    ``min_support`` picks the cells and groups measured on the whole split, and every resample
    measures those (the interval is that of the card's estimate; a cell's resampled count does
    not move it in or out)."""
    y_true, y_pred, groups = (np.asarray(a, dtype=np.int64) for a in (y_true, y_pred, groups))
    full = CellCounts(
        y_true, y_pred, groups, num_classes=num_classes, num_groups=num_groups, min_support=min_support
    )
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws: dict[str, list[float]] = {m.key: [] for m in METRICS.values() if m.interval}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        values = headline_from_counts(
            y_true[idx],
            y_pred[idx],
            groups[idx],
            num_classes=num_classes,
            num_groups=num_groups,
            min_support=min_support,
            reference=full,
        )
        for key, value in values.items():
            if value is not None:
                draws[key].append(value)
    tail = (1.0 - level) / 2.0 * 100.0
    out: dict = {"method": "percentile bootstrap", "resamples": resamples, "level": level, "seed": seed}
    for key, values in draws.items():
        if values:
            low, high = np.percentile(values, [tail, 100.0 - tail])
            out[key] = {"low": float(low), "high": float(high)}
        else:
            out[key] = None
    return out
