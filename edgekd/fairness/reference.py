"""The independent reference for the card's metrics: the same metric set computed through fairlearn.

Every number on the card comes from one engine, :func:`edgekd.fairness.metrics.evaluate_predictions`
(counts per (class, group) cell, numpy only, what the device and the bootstrap use too). This module
computes the same set another way, through fairlearn's ``MetricFrame`` and its
``demographic_parity_difference`` / ``equalized_odds_difference``, so that the two can be held
equal: the build cross-checks each model's headline DPD and EOD against it
(:func:`cross_check`, a disagreement is a bug and stops the build), and the tests compare the
whole set on random and edge-case predictions. The per-class view of a multi-class classifier is a
loop of one-vs-rest problems around fairlearn (class ``c`` is the positive label):

* per-class group recall ``R_g(c) = P(pred = c | y = c, group = g)`` via ``MetricFrame``;
* per-class disparity ``D(c) = R_a(c) - R_b(c)`` for two groups ``a, b`` (in the order of the
  data source's group names) and ``max_g R_g(c) - min_g R_g(c)`` for more;
* demographic parity difference ``DPD(c) = max_g P(pred = c | g) - min_g P(pred = c | g)``
  (Calders & Verwer 2010; fairlearn ``demographic_parity_difference``);
* equalized odds difference ``EOD(c) = max(max-min TPR_g, max-min FPR_g)`` (Hardt, Price &
  Srebro 2016; fairlearn ``equalized_odds_difference``, ``agg="worst_case"``).

Summaries are the mean and the worst class. A class that has no test images in some group has an
undefined recall there: it is reported as ``None`` and left out of the means, never divided by 0.

Cells too small to measure: a rate resting on fewer than ``min_support`` test images is left out
(the card's ``card.min_support``; 1, the default here, keeps every cell with an image). For class
``c`` and group ``g``:

* the recall ``R_g(c)`` rests on the ``n_{c,g}`` images of the (class, group) cell: the disparity
  uses the groups with ``n_{c,g} >= min_support`` (two groups: both, else undefined);
* ``P(pred = c | g)`` rests on the group's ``n_g`` images: DPD uses the groups with
  ``n_g >= min_support``;
* TPR and FPR rest on the cell's positives and negatives: EOD uses the groups with at least
  ``min_support`` of each.

A class where fewer than two groups remain has undefined (``None``) disparity, DPD or EOD and is
left out of the means. The recall of every cell is still reported, whatever its size.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import precision_recall_fscore_support, recall_score

from edgekd.errors import EdgeKDError
from edgekd.fairness.counts import CellCounts
from edgekd.fairness.metric_table import METRICS

__all__ = ["fairlearn_metrics", "cross_check", "group_recalls", "per_class_disparity"]

_recall = partial(recall_score, zero_division=np.nan)


def _named(groups: np.ndarray):
    """Groups as a named pandas Series: fairlearn reads a bare one-element array as 2-D."""
    return pd.Series(np.asarray(groups), name="group")


def group_recalls(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, *, num_classes: int, num_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and support of every (class, group) cell, shape ``(num_classes, num_groups)``.

    Cells without test images hold ``nan`` recall and zero support.
    """
    recall = np.full((num_classes, num_groups), np.nan)
    support = np.zeros((num_classes, num_groups), dtype=np.int64)
    for c in range(num_classes):
        frame = MetricFrame(
            metrics={"recall": _recall, "support": count},
            y_true=(y_true == c).astype(int),
            y_pred=(y_pred == c).astype(int),
            sensitive_features=_named(groups),
        )
        for g, row in frame.by_group.iterrows():
            positives = int(((y_true == c) & (groups == g)).sum())
            support[c, int(g)] = positives
            recall[c, int(g)] = row["recall"] if positives else np.nan
    return recall, support


def per_class_disparity(
    recall: np.ndarray, support: np.ndarray | None = None, *, min_support: int = 1
) -> np.ndarray:
    """``R_a - R_b`` for two groups, ``max - min`` over the measured groups for more.

    A cell is measured when it has a recall and (given ``support``) at least ``min_support``
    images; two groups need both measured, more groups at least two.
    """
    measured = ~np.isnan(recall)
    if support is not None:
        measured &= support >= min_support
    if recall.shape[1] == 2:
        return np.where(measured.all(1), recall[:, 0] - recall[:, 1], np.nan)
    out = np.full(recall.shape[0], np.nan)
    for c, row in enumerate(recall):
        seen = row[measured[c]]
        if len(seen) >= 2:
            out[c] = seen.max() - seen.min()
    return out


def _one_vs_rest_gaps(
    y_true, y_pred, groups, num_classes, *, min_support: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, DPD over the groups with ``min_support`` images and EOD over the groups whose
    cell has ``min_support`` positives and negatives (fairlearn on those groups' images)."""
    present, sizes = np.unique(groups, return_counts=True)
    measured = present[sizes >= min_support]
    dpd = np.full(num_classes, np.nan)
    eod = np.full(num_classes, np.nan)
    if len(measured) < 2:
        return dpd, eod
    in_measured = np.isin(groups, measured)
    for c in range(num_classes):
        t, p = (y_true == c).astype(int), (y_pred == c).astype(int)
        dpd[c] = demographic_parity_difference(
            t[in_measured], p[in_measured], sensitive_features=_named(groups[in_measured])
        )
        # TPR and FPR need positives and negatives: the groups with enough of both
        rated = [g for g in measured if min(t[groups == g].sum(), (1 - t[groups == g]).sum()) >= min_support]
        if len(rated) >= 2:
            keep = np.isin(groups, rated)
            eod[c] = equalized_odds_difference(t[keep], p[keep], sensitive_features=_named(groups[keep]))
    return dpd, eod


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _summary(values: np.ndarray, class_names: list[str], *, absolute: bool = False) -> dict:
    vals = np.abs(values) if absolute else values
    if np.all(np.isnan(vals)):
        return {"mean": None, "worst": None, "worst_class": None}
    worst = int(np.nanargmax(vals))
    return {
        "mean": float(np.nanmean(vals)),
        "worst": float(vals[worst]),
        "worst_class": class_names[worst],
    }


def fairlearn_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    min_support: int = 1,
) -> dict:
    """The card's metric set for one model or artifact, through fairlearn: the same parameters,
    keys and (a test holds them equal) values as :func:`edgekd.fairness.metrics.evaluate_predictions`."""
    y_true, y_pred, groups = (np.asarray(a).astype(np.int64) for a in (y_true, y_pred, groups))
    num_classes, num_groups = len(class_names), len(group_names)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0
    )
    cell_recall, support = group_recalls(
        y_true, y_pred, groups, num_classes=num_classes, num_groups=num_groups
    )
    disparity = per_class_disparity(cell_recall, support, min_support=min_support)
    dpd, eod = _one_vs_rest_gaps(y_true, y_pred, groups, num_classes, min_support=min_support)
    per_class = []
    for c, name in enumerate(class_names):
        positives = y_true == c
        per_class.append(
            {
                "class": name,
                "recall": _nan_to_none(float((y_pred[positives] == c).mean()) if positives.any() else np.nan),
                "recall_by_group": {g: _nan_to_none(cell_recall[c, k]) for k, g in enumerate(group_names)},
                "support_by_group": {g: int(support[c, k]) for k, g in enumerate(group_names)},
                "disparity": _nan_to_none(disparity[c]),
                "dpd": _nan_to_none(dpd[c]),
                "eod": _nan_to_none(eod[c]),
            }
        )
    abs_disp = _summary(disparity, class_names, absolute=True)
    metrics = {
        "n": int(len(y_true)),
        "top1": float((y_true == y_pred).mean()) if len(y_true) else None,
        "macro_recall": float(recall),
        "macro_precision": float(precision),
        "macro_f1": float(f1),
        "mean_abs_disparity": abs_disp["mean"],
        "max_abs_disparity": abs_disp["worst"],
        "max_abs_disparity_class": abs_disp["worst_class"],
        "dpd": _summary(dpd, class_names),
        "eod": _summary(eod, class_names),
        "worst_cell": _worst_cell(cell_recall, support, class_names, group_names, min_support),
        "classes_without_support": [class_names[c] for c in range(num_classes) if (support[c] == 0).any()],
        "per_class": per_class,
    }
    counted = [m for m in METRICS.values() if m.path is None]  # metrics of the table computed from counts
    if counted:
        counts = CellCounts(
            y_true, y_pred, groups, num_classes=num_classes, num_groups=num_groups, min_support=min_support
        )
        metrics.update({m.key: m.from_counts(counts) for m in counted})
    return metrics


def _worst_cell(
    cell_recall: np.ndarray,
    support: np.ndarray,
    class_names: list[str],
    group_names: list[str],
    min_support: int,
) -> dict | None:
    """The lowest recall over the cells with ``max(min_support, 1)`` images, first in (class,
    group) order on a tie."""
    cells = [
        (cell_recall[c, g], c, g)
        for c in range(len(class_names))
        for g in range(len(group_names))
        if support[c, g] >= max(min_support, 1)
    ]
    if not cells:
        return None
    recall, c, g = min(cells, key=lambda cell: cell[0])  # min keeps the first of equal recalls
    return {
        "class": class_names[c],
        "group": group_names[g],
        "recall": float(recall),
        "images": int(support[c, g]),
    }


CROSS_CHECKED = (("dpd", "mean"), ("dpd", "worst"), ("eod", "mean"), ("eod", "worst"))


def cross_check(
    metrics: dict,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    min_support: int = 1,
    what: str = "a model",
    tolerance: float = 1e-9,
) -> None:
    """Stop with one line when ``metrics`` (from the count engine) and fairlearn disagree on the
    headline DPD or EOD (mean and worst class) of the same predictions: the two implement one
    definition, so a difference beyond ``tolerance`` is a bug, not a result to ship."""
    reference = fairlearn_metrics(
        y_true, y_pred, groups, class_names=class_names, group_names=group_names, min_support=min_support
    )
    for metric, summary in CROSS_CHECKED:
        ours, theirs = metrics[metric][summary], reference[metric][summary]
        if (ours is None) != (theirs is None) or (ours is not None and abs(ours - theirs) > tolerance):
            raise EdgeKDError(
                f"{what}: {metric} {summary} is {ours} from the count engine and {theirs} "
                f"from fairlearn; the two must agree (a bug in edgekd: please report it)"
            )
