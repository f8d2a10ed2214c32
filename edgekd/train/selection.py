"""Which epoch a stage keeps as ``best.pt``: the checkpoint metric, picked by name in a recipe.

The validation split of a biased source is biased too (``bias`` 0.9: nine in ten images of a
class take the class's majority group). Top-1 on it rewards the shortcut that a balanced test
split punishes, so by default a stage keeps the epoch with the best *group-aware* score:

* ``top1``: share of validation images classified right;
* ``cell_balanced_accuracy``: mean recall over the (class, group) cells that have validation
  images, ``mean_{c,g} R_{c,g}``, so a minority cell of 10 images weighs what a majority cell
  of 90 weighs (balanced accuracy, Brodersen et al. 2010, over cells instead of classes);
* ``worst_cell_recall``: ``min_{c,g} R_{c,g}``, the worst-served cell (the criterion of group
  DRO, Sagawa et al. 2020);
* ``auto`` (the default): ``cell_balanced_accuracy`` when the data have two or more protected
  groups, ``top1`` otherwise.

Every score is computed on every epoch and kept in the stage's history (``val_<name>``), so the
card can say which one chose the epoch and what the others were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgekd.fairness.counts import CellCounts, top1
from edgekd.registry import Registry

__all__ = [
    "SELECTION_METRICS",
    "cell_balanced_accuracy",
    "worst_cell_recall",
    "resolve_select_by",
    "validation_scores",
    "best_epoch",
]

SELECTION_METRICS: Registry[Callable[[CellCounts], float | None]] = Registry("checkpoint metric")


def _cell_recalls(counts: CellCounts) -> np.ndarray:
    recall = counts.tpr
    return recall[np.isfinite(recall)]


@SELECTION_METRICS.register("cell_balanced_accuracy")
def cell_balanced_accuracy(counts: CellCounts) -> float | None:
    """Mean recall over the (class, group) cells that have images."""
    recalls = _cell_recalls(counts)
    return float(recalls.mean()) if recalls.size else None


@SELECTION_METRICS.register("worst_cell_recall")
def worst_cell_recall(counts: CellCounts) -> float | None:
    """Lowest recall over the (class, group) cells that have images."""
    recalls = _cell_recalls(counts)
    return float(recalls.min()) if recalls.size else None


SELECTION_METRICS.register("top1")(top1)


def resolve_select_by(select_by: str, num_groups: int) -> str:
    """The metric ``auto`` stands for: group-aware where there are groups to be aware of."""
    if select_by != "auto":
        return select_by
    return "cell_balanced_accuracy" if num_groups >= 2 else "top1"


def validation_scores(counts: CellCounts) -> dict[str, float | None]:
    """Every checkpoint metric of one validation pass, as ``{"val_<name>": value}``."""
    return {f"val_{name}": SELECTION_METRICS.get(name)(counts) for name in SELECTION_METRICS}


def best_epoch(history: Sequence[dict], select_by: str) -> dict | None:
    """The record of the epoch ``select_by`` keeps: the first with the highest score (an epoch
    whose score is undefined never wins over one whose score is defined)."""
    key = f"val_{select_by}"
    best, best_score = None, -np.inf
    for record in history:
        score = record.get(key)
        if score is not None and score > best_score:
            best, best_score = record, score
    return best if best is not None else (history[0] if history else None)
