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

__all__ = ["CellCounts", "top1", "mean_abs_disparity", "mean_dpd", "mean_eod"]


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

