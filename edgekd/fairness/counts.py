"""Headline metrics from (class, group) counts: numpy only, fast enough to bootstrap.

One evaluation (true class, predicted class and protected group of each test image) is reduced to
counts per (class, group) cell with ``np.bincount``; every count-based metric reads them. The
definitions are those of :mod:`edgekd.fairness.metrics` (the card's engine, built on these
counts) and of :mod:`edgekd.fairness.reference` (the same through fairlearn); a test checks
they agree. They are cheap enough to recompute for 1000 bootstrap resamples
(fairlearn's per-call overhead would cost 1000x) and need neither fairlearn nor pandas, so the
device side can use them.

* top-1;
* mean |disparity| over classes with support in every group (two groups: ``R_a - R_b``, more:
  ``max - min`` over the groups with support);
* mean DPD: ``mean_c [max_g P(pred=c | g) - min_g P(pred=c | g)]``;
* mean EOD: ``mean_c max(range_g TPR_g(c), range_g FPR_g(c))``.

"Support" is ``min_support`` test images under a rate (1 by default: any image), as in
:mod:`edgekd.fairness.metrics`: a recall needs that many images in its (class, group) cell, a
group's prediction rate that many in the group, TPR and FPR that many positives and negatives.
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
    min_support : int
        Fewest test images a rate may rest on to count in a gap (1: every cell with an image).
    reference : CellCounts, optional
        The evaluation whose cell sizes decide which cells and groups are measured (default:
        this one). A bootstrap resample passes the full test split's counts, so every resample
        estimates the gap over the same cells as the card; a cell a resample leaves empty is
        still left out.
    """

    def __init__(
        self,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        groups: np.ndarray,
        *,
        num_classes: int,
        num_groups: int,
        min_support: int = 1,
        reference: CellCounts | None = None,
    ) -> None:
        y_true, y_pred, groups = (np.asarray(a, dtype=np.int64) for a in (y_true, y_pred, groups))
        self.y_true, self.y_pred, self.groups = y_true, y_pred, groups
        self.num_classes, self.num_groups = num_classes, num_groups
        self.min_support = max(int(min_support), 1)
        cells = num_classes * num_groups
        true_cell = y_true * num_groups + groups
        self.positives = np.bincount(true_cell, minlength=cells).reshape(num_classes, num_groups)
        self.hits = np.bincount(true_cell[y_true == y_pred], minlength=cells).reshape(num_classes, num_groups)
        self.predicted = np.bincount(y_pred * num_groups + groups, minlength=cells).reshape(
            num_classes, num_groups
        )
        self.per_group = np.bincount(groups, minlength=num_groups)[None, :]
        self.present = self.per_group[0] > 0
        ref, m = reference or self, self.min_support
        # what is measured: recall of a cell with m images, a group's prediction rate with m
        # images, TPR and FPR of a cell with m positives and m negatives
        self.measured_cells = ref.positives >= m
        self.measured_groups = ref.per_group[0] >= m
        self.rated_cells = self.measured_cells & (ref.per_group - ref.positives >= m)

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

    @property
    def small_cells(self) -> np.ndarray:
        """``(num_classes, num_groups)`` bool: cells with fewer than ``min_support`` images
        (empty ones too), whose recall is left out of the class's disparity and EOD."""
        return ~self.measured_cells

    def per_class_disparity(self, *, signed: bool = False) -> np.ndarray:
        """|disparity| per class (``nan`` where undefined); ``signed``: ``R_a - R_b`` for two groups."""
        tpr = self.tpr
        if not self.comparable:
            return np.full(self.num_classes, np.nan)
        supported = ~np.isnan(tpr) & self.measured_cells
        if self.num_groups == 2:
            gap = np.where(supported.all(1), tpr[:, 0] - tpr[:, 1], np.nan)
            return gap if signed else np.abs(gap)
        # max - min over the groups with support, when two have it
        high = np.where(supported, tpr, -np.inf).max(1)
        low = np.where(supported, tpr, np.inf).min(1)
        return np.where(supported.sum(1) >= 2, high - low, np.nan)

    def per_class_dpd(self) -> np.ndarray:
        groups = self.measured_groups & self.present
        if groups.sum() < 2:
            return np.full(self.num_classes, np.nan)
        rate = self._rates[2][:, groups]
        return rate.max(1) - rate.min(1)

    def per_class_eod(self) -> np.ndarray:
        tpr, fpr, _ = self._rates
        # TPR and FPR need positives and negatives: the rated cells that have both here
        rated = self.rated_cells & (self.positives > 0) & (self.per_group - self.positives > 0)
        with np.errstate(invalid="ignore"):
            tpr_gap = np.where(rated, tpr, -np.inf).max(1) - np.where(rated, tpr, np.inf).min(1)
            fpr_gap = np.where(rated, fpr, -np.inf).max(1) - np.where(rated, fpr, np.inf).min(1)
        return np.where(rated.sum(1) >= 2, np.maximum(tpr_gap, fpr_gap), np.nan)


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
