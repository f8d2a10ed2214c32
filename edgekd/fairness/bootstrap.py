"""Bootstrap confidence intervals for a model's headline metrics.

The test set is resampled with replacement ``resamples`` times (seeded, so the card is
reproducible) and each metric is recomputed per resample; the interval is the percentile
interval ``[q_{(1-level)/2}, q_{(1+level)/2}]`` of those values (Efron & Tibshirani 1993).

Per resample the metrics are computed from (class, group) counts with ``np.bincount`` rather than
through fairlearn, which would cost 1000x its per-call overhead; they use the same definitions
as :mod:`edgekd.fairness.metrics` and a test checks they agree on the unresampled data:

* top-1; mean |disparity| over classes with support in every group (two groups:
  ``R_a - R_b``, more: ``max - min``);
* mean DPD: ``mean_c [max_g P(pred=c | g) - min_g P(pred=c | g)]``;
* mean EOD: ``mean_c max(range_g TPR_g(c), range_g FPR_g(c))``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["headline_from_counts", "bootstrap_intervals"]


def headline_from_counts(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, *,
                         num_classes: int, num_groups: int) -> dict:
    """top-1, mean |disparity|, mean DPD and mean EOD of one (resampled) evaluation."""
    cells = num_classes * num_groups
    positives = np.bincount(y_true * num_groups + groups, minlength=cells).reshape(num_classes, num_groups)
    hits = np.bincount((y_true * num_groups + groups)[y_true == y_pred],
                       minlength=cells).reshape(num_classes, num_groups)
    predicted = np.bincount(y_pred * num_groups + groups, minlength=cells).reshape(num_classes, num_groups)
    per_group = np.bincount(groups, minlength=num_groups)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = hits / positives
        fpr = (predicted - hits) / (per_group - positives)
        rate = predicted / per_group
    present = per_group[0] > 0
    if present.sum() < 2:
        nan = np.full(num_classes, np.nan)
        disparity = dpd = eod = nan
    else:
        if num_groups == 2:
            disparity = np.abs(tpr[:, 0] - tpr[:, 1])
        else:  # max - min over the groups with support, when at least two have it
            supported = ~np.isnan(tpr)
            high = np.where(supported, tpr, -np.inf).max(1)
            low = np.where(supported, tpr, np.inf).min(1)
            disparity = np.where(supported.sum(1) >= 2, high - low, np.nan)
        dpd = rate[:, present].max(1) - rate[:, present].min(1)
        # TPR and FPR need positives and negatives in every present group (else EOD undefined)
        defined = ((positives[:, present] > 0) & (positives[:, present] < per_group[:, present])).all(1)
        eod = np.where(defined, np.maximum(np.ptp(np.nan_to_num(tpr[:, present]), 1),
                                           np.ptp(np.nan_to_num(fpr[:, present]), 1)), np.nan)
    return {
        "top1": float((y_true == y_pred).mean()),
        "mean_abs_disparity": _nanmean(disparity),
        "dpd": _nanmean(dpd),
        "eod": _nanmean(eod),
    }


def _nanmean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def bootstrap_intervals(y_true, y_pred, groups, *, num_classes: int, num_groups: int,
                        resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap intervals: ``{metric: {"low", "high"}}`` plus the settings used."""
    y_true, y_pred, groups = (np.asarray(a, dtype=np.int64) for a in (y_true, y_pred, groups))
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws: dict[str, list[float]] = {"top1": [], "mean_abs_disparity": [], "dpd": [], "eod": []}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        values = headline_from_counts(y_true[idx], y_pred[idx], groups[idx],
                                      num_classes=num_classes, num_groups=num_groups)
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
