"""The card's metric set of one model or artifact: the one metrics engine (numpy only).

One evaluation (true class, predicted class and protected group of each test image) is reduced
to counts per (class, group) cell (:class:`~edgekd.fairness.counts.CellCounts`); every number on
the card, in the bench, the sweep and the bootstrap comes from those counts:

* per-class group recall ``R_g(c) = P(pred = c | y = c, group = g)``;
* per-class disparity ``D(c) = R_a(c) - R_b(c)`` for two groups ``a, b`` (in the order of the
  data source's group names) and ``max_g R_g(c) - min_g R_g(c)`` for more;
* demographic parity difference ``DPD(c) = max_g P(pred = c | g) - min_g P(pred = c | g)``
  (Calders & Verwer 2010);
* equalized odds difference ``EOD(c) = max(max-min TPR_g, max-min FPR_g)`` (Hardt, Price &
  Srebro 2016), one-vs-rest per class;

summarised as the mean and the worst class. A rate resting on fewer than ``min_support`` test
images is left out of the gaps (:mod:`edgekd.fairness.counts`). fairlearn computes the same set
independently (:mod:`edgekd.fairness.reference`): the build cross-checks DPD and EOD against it.
"""

from __future__ import annotations

import numpy as np

from edgekd.fairness.counts import CellCounts, top1
from edgekd.fairness.metric_table import METRICS

__all__ = ["evaluate_predictions", "worst_cell"]


def _none(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def _summary(values: np.ndarray, class_names: list[str]) -> dict:
    if np.all(np.isnan(values)):
        return {"mean": None, "worst": None, "worst_class": None}
    worst = int(np.nanargmax(values))
    return {
        "mean": float(np.nanmean(values)),
        "worst": float(values[worst]),
        "worst_class": class_names[worst],
    }


def worst_cell(counts: CellCounts, class_names: list[str], group_names: list[str]) -> dict | None:
    """The (class, group) cell with the lowest recall among the measured cells (at least
    ``min_support`` test images): ``{"class", "group", "recall", "images"}``, the first cell in
    (class, group) order on a tie; ``None`` when no cell is measured.

    A mean gap (DPD, |disparity|) can be small while one cell is never recognised: this is the
    number that says so.
    """
    recall = np.where(counts.measured_cells & (counts.positives > 0), counts.tpr, np.inf)
    if not np.isfinite(recall).any():
        return None
    c, g = np.unravel_index(int(np.argmin(recall)), recall.shape)
    return {
        "class": class_names[c],
        "group": group_names[g],
        "recall": float(recall[c, g]),
        "images": int(counts.positives[c, g]),
    }


def evaluate_predictions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    min_support: int = 1,
) -> dict:
    """The card's metric set for one model or artifact.

    Parameters
    ----------
    y_true, y_pred, groups : array of int, shape (n,)
        True class, predicted class and protected group index of each test image.
    class_names, group_names : list of str
        Names in index order; group order fixes the sign of two-group disparities.
    min_support : int
        Fewest test images a rate may rest on (the card's ``card.min_support``); 1 keeps every cell.

    Returns
    -------
    dict
        ``top1``, ``macro_recall``, ``macro_precision``, ``macro_f1`` (a class with no prediction
        or no image counts as 0, as scikit-learn's ``zero_division=0`` does),
        ``mean_abs_disparity``, ``max_abs_disparity``, ``dpd`` and ``eod`` (each ``mean``,
        ``worst``, ``worst_class``), ``worst_cell`` (:func:`worst_cell`) and ``per_class``
        rows with recall by group, support by group, disparity, DPD and EOD; plus, by key, every metric of
        :mod:`edgekd.fairness.metric_table` that has no ``path``.
    """
    num_classes, num_groups = len(class_names), len(group_names)
    counts = CellCounts(
        y_true, y_pred, groups, num_classes=num_classes, num_groups=num_groups, min_support=min_support
    )
    positives, hits = counts.positives.sum(1), counts.hits.sum(1)
    predicted = counts.predicted.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(positives > 0, hits / positives, 0.0)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f1 = np.where(recall + precision > 0, 2 * precision * recall / (precision + recall), 0.0)
    tpr = counts.tpr
    disparity = counts.per_class_disparity(signed=True)
    dpd, eod = counts.per_class_dpd(), counts.per_class_eod()
    per_class = [
        {
            "class": name,
            "recall": _none(hits[c] / positives[c]) if positives[c] else None,
            "recall_by_group": {g: _none(tpr[c, k]) for k, g in enumerate(group_names)},
            "support_by_group": {g: int(counts.positives[c, k]) for k, g in enumerate(group_names)},
            "disparity": _none(disparity[c]),
            "dpd": _none(dpd[c]),
            "eod": _none(eod[c]),
        }
        for c, name in enumerate(class_names)
    ]
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
        "worst_cell": worst_cell(counts, class_names, group_names),
        "classes_without_support": [
            class_names[c] for c in range(num_classes) if (counts.positives[c] == 0).any()
        ],
        "per_class": per_class,
    }
    metrics.update({m.key: m.from_counts(counts) for m in METRICS.values() if m.path is None})
    return metrics
