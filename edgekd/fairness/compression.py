"""What one compression step did to whom: paired predictions before and after, per (class, group).

A step (teacher -> student, baseline -> student, student -> an exported file or an engine) is
evaluated on the same test images before and after. For the images of one (class, group) cell
``S`` (``y = c`` and ``group = g``, ``n = |S|``):

* agreement ``A = |{i in S : before_i = after_i}| / n``: how often the step kept the prediction;
* flips ``b = |{i in S : before_i = y_i != after_i}|`` (right before, wrong after) and
  ``c = |{i in S : before_i != y_i = after_i}|`` (wrong before, right after);
* recall change ``(c - b) / n`` (after minus before: only discordant images move a recall);
* McNemar's exact test on ``b`` and ``c`` (:func:`edgekd.fairness.significance.mcnemar_exact`),
  Benjamini-Hochberg over all cells of the step at the card's ``alpha``; a cell counts as
  *changed* when significant and ``|recall change| >= min_effect``, as the card's classes do.

The same per group (all classes of one group) and for the whole split. Agreement is 1 - flip rate
of the prediction (not only of correctness: a wrong prediction that becomes another wrong one
counts against agreement, not in ``b`` or ``c``).

Why per cell: Hooker et al. ("What do compressed deep neural networks forget?", 2019;
"Characterising bias in compressed models", 2020) found that pruning and quantization cost
under-represented groups and attributes most while top-1 barely moves, and Lukasik et al.
("Teacher's pet", 2021) found the same for distillation: an overall agreement of 0.98 can hide a
cell at 0.80. The images a step changes are Hooker's "compression identified exemplars";
:func:`changed_indices` names them so the bundle can keep them.

Numpy only (scipy for the exact test, imported where a test runs): the device computes the same
numbers from the bundle's predictions without torch.
"""

from __future__ import annotations

import numpy as np

from edgekd.fairness.significance import DEFAULT_MIN_EFFECT, benjamini_hochberg, mark_change, mcnemar_exact

__all__ = ["cell_agreement", "worst_cell_agreement", "compression_effect", "changed_indices"]


def _as_int(*arrays) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a, dtype=np.int64) for a in arrays)


def cell_agreement(
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    groups: np.ndarray,
    *,
    num_classes: int,
    num_groups: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Agreement of ``after`` with ``before`` per (class, group) cell, and the cells' sizes.

    Returns ``(agreement, images)``, both shaped ``(num_classes, num_groups)``; an empty cell's
    agreement is NaN.

    >>> agree, n = cell_agreement([0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1],
    ...                           num_classes=2, num_groups=2)
    >>> agree.tolist()[0][0], agree.tolist()[1][1], n.tolist()
    (0.5, 1.0, [[2, 0], [0, 2]])
    """
    y_true, before, after, groups = _as_int(y_true, before, after, groups)
    cells = num_classes * num_groups
    cell = y_true * num_groups + groups
    images = np.bincount(cell, minlength=cells).reshape(num_classes, num_groups)
    same = np.bincount(cell[before == after], minlength=cells).reshape(num_classes, num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(images > 0, same / np.maximum(images, 1), np.nan)
    return agreement, images


def worst_cell_agreement(
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    min_support: int = 1,
) -> dict | None:
    """The (class, group) cell where ``after`` agrees least with ``before``, among cells with at
    least ``min_support`` images: ``{"class", "group", "agreement", "images"}`` (the first cell in
    (class, group) order on a tie), ``None`` when no cell has that many images."""
    agreement, images = cell_agreement(
        y_true, before, after, groups, num_classes=len(class_names), num_groups=len(group_names)
    )
    measured = np.where(images >= max(int(min_support), 1), agreement, np.inf)
    if not np.isfinite(measured).any():
        return None
    c, g = np.unravel_index(int(np.argmin(measured)), measured.shape)
    return {
        "class": class_names[c],
        "group": group_names[g],
        "agreement": float(agreement[c, g]),
        "images": int(images[c, g]),
    }


def changed_indices(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Indices (into the test split, i.e. ``eval_set.npz``) of the images whose prediction the
    step changed: Hooker et al.'s compression identified exemplars."""
    before, after = _as_int(before, after)
    return np.flatnonzero(before != after)


def _paired(y_true: np.ndarray, before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> dict:
    right_before, right_after = before == y_true, after == y_true
    n = int(mask.sum())
    b = int((right_before & ~right_after & mask).sum())
    c = int((~right_before & right_after & mask).sum())
    return {
        "images": n,
        "agreement": float((before == after)[mask].mean()) if n else None,
        "right_to_wrong": b,
        "wrong_to_right": c,
        "accuracy_change": (c - b) / n if n else None,
        "p": mcnemar_exact(b, c),
    }


def _correct(rows: list[dict], *, alpha: float, min_effect: float) -> None:
    adjusted, rejected = benjamini_hochberg([r["p"] for r in rows], alpha=alpha)
    for row, p_adjusted, significant in zip(rows, adjusted, rejected):
        mark_change(row, p_adjusted, significant, min_effect, change_key="accuracy_change")


def compression_effect(
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    alpha: float = 0.05,
    min_effect: float = DEFAULT_MIN_EFFECT,
    min_support: int = 1,
) -> dict:
    """The per-cell, per-group and overall effect of one step (module docstring).

    Parameters
    ----------
    y_true, before, after, groups : int arrays, shape (n,)
        True class, the predictions before and after the step on the same images, and the group.
    class_names, group_names : list of str
    alpha : float
        False discovery rate of the Benjamini-Hochberg correction (over the cells; over the
        groups for the groups).
    min_effect : float
        Smallest |recall change| that counts as a change (``card.min_effect``).
    min_support : int
        Fewest images a cell needs to be the worst cell (``card.min_support``); every non-empty
        cell is still listed and tested.

    Returns
    -------
    dict
        ``overall`` (images, agreement, right_to_wrong, wrong_to_right, accuracy_change: top-1
        after minus before, p), ``per_group`` and ``per_cell`` rows (the same fields, plus
        ``p_adjusted``, ``significant``, ``changed``; a cell's ``accuracy_change`` is its recall
        change; empty cells left out), ``worst_cell`` / ``worst_group`` (lowest agreement with at
        least ``min_support`` images), ``changed_cells`` (``"class / group"`` of the changed cells),
        ``changed_images`` (how many predictions the step changed), and the test's settings.
    """
    y_true, before, after, groups = _as_int(y_true, before, after, groups)
    if not (y_true.shape == before.shape == after.shape == groups.shape):
        raise ValueError("y_true, before, after and groups must have one entry per test image")
    cells = []
    for k, name in enumerate(class_names):
        for g, group in enumerate(group_names):
            mask = (y_true == k) & (groups == g)
            if mask.any():
                cells.append({"class": name, "group": group, **_paired(y_true, before, after, mask)})
    per_group = [
        {"group": group, **_paired(y_true, before, after, groups == g)}
        for g, group in enumerate(group_names)
        if (groups == g).any()
    ]
    _correct(cells, alpha=alpha, min_effect=min_effect)
    _correct(per_group, alpha=alpha, min_effect=min_effect)
    support = max(int(min_support), 1)

    def lowest(rows: list[dict]) -> dict | None:
        measured = [r for r in rows if r["images"] >= support]
        return min(measured, key=lambda r: r["agreement"]) if measured else None

    worst = lowest(cells)
    worst_group = lowest(per_group)
    return {
        "test": "McNemar exact, Benjamini-Hochberg",
        "alpha": alpha,
        "min_effect": min_effect,
        "min_support": support,
        "overall": _paired(y_true, before, after, np.ones_like(y_true, dtype=bool)),
        "per_group": per_group,
        "per_cell": cells,
        "worst_cell": None
        if worst is None
        else {k: worst[k] for k in ("class", "group", "agreement", "images")},
        "worst_group": None
        if worst_group is None
        else {k: worst_group[k] for k in ("group", "agreement", "images")},
        "changed_cells": [f"{r['class']} / {r['group']}" for r in cells if r["changed"]],
        "changed_images": int((before != after).sum()),
    }
