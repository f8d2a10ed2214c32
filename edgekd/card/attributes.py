"""What the card says about its groups: the cells too small to measure, and each protected
attribute alone when the groups are the intersections of several.

* ``card.min_support`` (default 20): a (class, group) cell with fewer test images of its class is
  too small to measure. Its recall is still shown, but it is left out of the class's disparity and
  EOD and so of the means (:mod:`edgekd.fairness.metrics`); a group with fewer test images in
  all is left out of DPD. Both are named on the card (``data.small_cells``,
  ``data.small_groups``), empty intersections included (0 images).
* ``by_attribute``: with ``protected: [Male, Young]`` the card's headline gaps are over the four
  intersections; each attribute alone is the same metrics over that attribute's groups
  (``Male=0``, ``Male=1``), every image counted in its value of the attribute whatever the
  others (the marginal), measured under the same ``min_support``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cell_counts", "small_cells", "small_groups", "by_attribute", "BY_ATTRIBUTE_KEYS"]

# What the card keeps of each model's metrics for one attribute alone.
BY_ATTRIBUTE_KEYS = ("mean_abs_disparity", "max_abs_disparity", "max_abs_disparity_class", "dpd", "eod")


def cell_counts(labels: np.ndarray, groups: np.ndarray, *, num_classes: int, num_groups: int) -> np.ndarray:
    """Test images per (class, group) cell, shape ``(num_classes, num_groups)``."""
    labels, groups = np.asarray(labels, np.int64), np.asarray(groups, np.int64)
    return np.bincount(labels * num_groups + groups, minlength=num_classes * num_groups).reshape(
        num_classes, num_groups
    )


def small_cells(
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    min_support: int,
) -> list[dict]:
    """``{"class", "group", "images"}`` of every cell under ``min_support`` test images, by class
    then group index."""
    counts = cell_counts(labels, groups, num_classes=len(class_names), num_groups=len(group_names))
    return [
        {"class": class_names[c], "group": group_names[g], "images": int(counts[c, g])}
        for c, g in zip(*np.nonzero(counts < min_support))
    ]


def small_groups(groups: np.ndarray, *, group_names: list[str], min_support: int) -> list[dict]:
    """``{"group", "images"}`` of every group under ``min_support`` test images (left out of DPD)."""
    sizes = np.bincount(np.asarray(groups, np.int64), minlength=len(group_names))
    return [
        {"group": name, "images": int(sizes[g])}
        for g, name in enumerate(group_names)
        if sizes[g] < min_support
    ]


def by_attribute(data, evaluations: dict, *, min_support: int) -> dict:
    """Each protected attribute alone (only when the groups are intersections of several).

    Parameters
    ----------
    data : DataSplits
        With ``attributes`` (:class:`edgekd.data.groups.ProtectedAttributes`).
    evaluations : dict of name -> Evaluation
        Every model and artifact of the card, with its test predictions.
    min_support : int
        The card's ``min_support``.

    Returns
    -------
    dict
        ``{attribute: {"groups", "test_counts_by_group", "small_cells", "small_groups",
        "models": {name: {mean_abs_disparity, max_abs_disparity, max_abs_disparity_class,
        dpd, eod, disparity_by_class}}}}``; ``{}`` for one attribute.
    """
    from edgekd.fairness.metrics import evaluate_predictions

    attributes = getattr(data, "attributes", None)
    if attributes is None or not attributes.several:
        return {}
    labels, groups = data.test.labels, np.asarray(data.test.groups, np.int64)
    out = {}
    for k, attribute in enumerate(attributes.names):
        names, value_of = attributes.marginal(k)
        marginal = value_of[groups]
        models = {}
        for name, evaluation in evaluations.items():
            metrics = evaluate_predictions(
                labels,
                evaluation.predictions,
                marginal,
                class_names=data.class_names,
                group_names=names,
                min_support=min_support,
            )
            models[name] = {key: metrics[key] for key in BY_ATTRIBUTE_KEYS}
            models[name]["disparity_by_class"] = {
                row["class"]: row["disparity"] for row in metrics["per_class"]
            }
        out[attribute] = {
            "groups": names,
            "test_counts_by_group": {g: int((marginal == v).sum()) for v, g in enumerate(names)},
            "small_cells": small_cells(
                labels, marginal, class_names=data.class_names, group_names=names, min_support=min_support
            ),
            "small_groups": small_groups(marginal, group_names=names, min_support=min_support),
            "models": models,
        }
    return out
