"""Headline metrics from (class, group) counts: numpy only, fast enough to bootstrap.

One evaluation (true class, predicted class and protected group of each test image) is reduced to
counts per (class, group) cell with ``np.bincount``; every count-based metric reads them. The
definitions are those of :mod:`edgekd.fairness.metrics` (which goes through fairlearn for the
card); a test checks they agree. They are cheap enough to recompute for 1000 bootstrap resamples
(fairlearn's per-call overhead would cost 1000x) and need neither fairlearn nor pandas, so the
device side can use them.

* top-1;
* mean |disparity| over classes with support in every group (two groups: ``R_a - R_b``, more:
  ``max - min`` over the groups with support);
* mean DPD: ``mean_c [max_g P(pred=c | g) - min_g P(pred=c | g)]``;
* mean EOD: ``mean_c max(range_g TPR_g(c), range_g FPR_g(c))``.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

__all__ = ["CellCounts", "top1", "mean_abs_disparity", "mean_dpd", "mean_eod", "evaluate_counts"]


class CellCounts:
    """Counts of one evaluation per (class, group) cell, and the rates derived from them.

    Parameters
    ----------
    y_true, y_pred, groups : int arrays, shape (n,)
    num_classes, num_groups : int
    """

    def __init__(self, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, *,
                 num_classes: int, num_groups: int) -> None:
        y_true, y_pred, groups = (np.asarray(a, dtype=np.int64) for a in (y_true, y_pred, groups))
        self.y_true, self.y_pred, self.groups = y_true, y_pred, groups
        self.num_classes, self.num_groups = num_classes, num_groups
        cells = num_classes * num_groups
        true_cell = y_true * num_groups + groups
        self.positives = np.bincount(true_cell, minlength=cells).reshape(num_classes, num_groups)
        self.hits = np.bincount(true_cell[y_true == y_pred], minlength=cells).reshape(num_classes,
                                                                                     num_groups)
        self.predicted = np.bincount(y_pred * num_groups + groups,
                                     minlength=cells).reshape(num_classes, num_groups)
        self.per_group = np.bincount(groups, minlength=num_groups)[None, :]
        self.present = self.per_group[0] > 0

    @cached_property
    def _rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = self.hits / self.positives
            fpr = (self.predicted - self.hits) / (self.per_group - self.positives)
            rate = self.predicted / self.per_group
        return tpr, fpr, rate

    @property
    def tpr(self) -> np.ndarray:
        """Recall of every (class, group) cell; ``nan`` where the cell has no image."""
        return self._rates[0]

    @property
    def comparable(self) -> bool:
        """At least two groups have test images: group gaps are defined."""
        return bool(self.present.sum() >= 2)

    def per_class_disparity(self, *, signed: bool = False) -> np.ndarray:
        """|disparity| per class (``nan`` where undefined); ``signed``: ``R_a - R_b`` for two groups."""
        tpr = self.tpr
        if not self.comparable:
            return np.full(self.num_classes, np.nan)
        if self.num_groups == 2:
            gap = tpr[:, 0] - tpr[:, 1]
            return gap if signed else np.abs(gap)
        supported = ~np.isnan(tpr)  # max - min over the groups with support, when two have it
        high = np.where(supported, tpr, -np.inf).max(1)
        low = np.where(supported, tpr, np.inf).min(1)
        return np.where(supported.sum(1) >= 2, high - low, np.nan)

    def per_class_dpd(self) -> np.ndarray:
        if not self.comparable:
            return np.full(self.num_classes, np.nan)
        rate = self._rates[2][:, self.present]
        return rate.max(1) - rate.min(1)

    def per_class_eod(self) -> np.ndarray:
        if not self.comparable:
            return np.full(self.num_classes, np.nan)
        tpr, fpr, _ = self._rates
        present, positives, per_group = self.present, self.positives, self.per_group
        # TPR and FPR need positives and negatives in every present group (else EOD undefined)
        defined = ((positives[:, present] > 0) & (positives[:, present] < per_group[:, present])).all(1)
        return np.where(defined, np.maximum(np.ptp(np.nan_to_num(tpr[:, present]), 1),
                                            np.ptp(np.nan_to_num(fpr[:, present]), 1)), np.nan)


def _nanmean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def top1(counts: CellCounts) -> float | None:
    """Share of test images whose predicted class is the true one."""
    return float((counts.y_true == counts.y_pred).mean()) if len(counts.y_true) else None


def mean_abs_disparity(counts: CellCounts) -> float | None:
    """Mean over classes of |per-class recall disparity| (classes where it is defined)."""
    return _nanmean(counts.per_class_disparity())


def mean_dpd(counts: CellCounts) -> float | None:
    """Mean over classes of the one-vs-rest demographic parity difference."""
    return _nanmean(counts.per_class_dpd())


def mean_eod(counts: CellCounts) -> float | None:
    """Mean over classes of the one-vs-rest equalized odds difference."""
    return _nanmean(counts.per_class_eod())


def _none(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def _summary(values: np.ndarray, class_names: list[str]) -> dict:
    if np.all(np.isnan(values)):
        return {"mean": None, "worst": None, "worst_class": None}
    worst = int(np.nanargmax(values))
    return {"mean": float(np.nanmean(values)), "worst": float(values[worst]),
            "worst_class": class_names[worst]}


def evaluate_counts(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, *,
                    class_names: list[str], group_names: list[str]) -> dict:
    """The card's metric set for one model or artifact from counts alone (numpy, no fairlearn).

    The same keys and values as :func:`edgekd.fairness.metrics.evaluate_predictions` (a test
    holds them equal); ``edgekd bench --eval`` uses this on the device, where fairlearn's stack
    (pandas, scikit-learn, scipy) is not installed. Macro precision, recall and F1 count a class
    with no prediction (or no image) as 0, as scikit-learn's ``zero_division=0`` does.
    """
    from edgekd.fairness.metric_table import METRICS

    num_classes, num_groups = len(class_names), len(group_names)
    counts = CellCounts(y_true, y_pred, groups, num_classes=num_classes, num_groups=num_groups)
    positives, hits = counts.positives.sum(1), counts.hits.sum(1)
    predicted = counts.predicted.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(positives > 0, hits / positives, 0.0)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f1 = np.where(recall + precision > 0, 2 * precision * recall / (precision + recall), 0.0)
    tpr = counts.tpr
    disparity = counts.per_class_disparity(signed=True)
    dpd, eod = counts.per_class_dpd(), counts.per_class_eod()
    per_class = [{
        "class": name,
        "recall": _none(hits[c] / positives[c]) if positives[c] else None,
        "recall_by_group": {g: _none(tpr[c, k]) for k, g in enumerate(group_names)},
        "support_by_group": {g: int(counts.positives[c, k]) for k, g in enumerate(group_names)},
        "disparity": _none(disparity[c]),
        "dpd": _none(dpd[c]),
        "eod": _none(eod[c]),
    } for c, name in enumerate(class_names)]
    abs_disp = _summary(np.abs(disparity), class_names)
    metrics = {
        "n": int(len(counts.y_true)),
        "top1": top1(counts),
        "macro_recall": float(recall.mean()),
        "macro_precision": float(precision.mean()),
        "macro_f1": float(f1.mean()),
        "mean_abs_disparity": abs_disp["mean"],
        "max_abs_disparity": abs_disp["worst"],
        "max_abs_disparity_class": abs_disp["worst_class"],
        "dpd": _summary(dpd, class_names),
        "eod": _summary(eod, class_names),
        "classes_without_support": [class_names[c] for c in range(num_classes)
                                    if (counts.positives[c] == 0).any()],
        "per_class": per_class,
    }
    metrics.update({m.key: m.from_counts(counts) for m in METRICS if m.path is None})
    return metrics
