"""Is a class's change between two models real? Paired tests with multiple-testing correction.

Two models evaluated on the *same* test images give paired outcomes. For class ``c`` take its
test images (``y = c``, optionally only those of one group) and count

* ``b``: model A right, model B wrong;  ``c``: model A wrong, model B right.

McNemar's exact test (McNemar 1947; the exact form is a binomial test) asks whether ``b`` and
``c`` differ more than chance: under H0 ``b ~ Binomial(b + c, 1/2)``, two-sided
``p = min(1, 2 * P(X <= min(b, c)))``, and ``p = 1`` when ``b + c = 0``.

Testing every class is testing many hypotheses, so p-values are corrected with
Benjamini-Hochberg (1995) at level ``alpha`` (false discovery rate): sort ``p_(1) <= ... <=
p_(m)``, reject the ``k`` smallest where ``k = max{i : p_(i) <= i * alpha / m}``. The card reports
the share of classes significantly changed, the statistic of Mohammadshahi & Ioannou (2024),
who found up to 41% of classes changed by distillation.

Significance alone is no effect size: on a large test split (10,000 images) a recall change of
a few tenths of a point is significant, and every class "changed". A class therefore counts as
*changed* when its change is significant (after the correction) **and** its recall moved by at
least ``min_effect`` (``card.min_effect``); the card reports both counts. The recall change of
class ``c`` from A to B is ``(c - b) / n_c`` with ``n_c`` its test images, since the discordant
pairs are the only images whose outcome differs.

With several seeds the study's test applies: per class, Welch's unequal-variance t-test
between the seeds of model A and of model B on class accuracy normalised by overall accuracy
(``recall_c / top1``), with the same correction.
"""

from __future__ import annotations

import math

import numpy as np

from edgekd.errors import EdgeKDError

__all__ = [
    "DEFAULT_MIN_EFFECT",
    "mcnemar_exact",
    "benjamini_hochberg",
    "mark_change",
    "classwise_mcnemar",
    "welch_classwise",
    "welch_from_metrics",
]

# A class changed by distillation: significant and recall moved by at least this much.
# Two points of recall. On the 800-image test split of the default synthetic recipe (200 images a
# class) the smallest change McNemar can find significant is 0.03 (b = 0, c = 6: p = 0.031), so
# the threshold never hides a change such a split can resolve; on 10,000 images (1,000 a class)
# changes down to 0.006 become significant, and it keeps those out of "changed".
DEFAULT_MIN_EFFECT = 0.02


def _stats():
    """scipy.stats, imported where a test runs: the recipe reads DEFAULT_MIN_EFFECT without it;
    ``None`` where scipy is not installed (the device), and the tests below are counted by hand."""
    try:
        from scipy import stats
    except ImportError:
        return None
    return stats


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` and ``c``.

    scipy's ``binomtest`` where installed; on the device (no scipy) the same sum, exactly in
    integers: ``min(1, 2 * sum_{i <= min(b, c)} C(b + c, i) / 2^(b + c))``.
    """
    n = int(b) + int(c)
    if n == 0:
        return 1.0
    stats = _stats()
    if stats is not None:
        return float(stats.binomtest(int(min(b, c)), n, 0.5, alternative="two-sided").pvalue)
    tail = sum(math.comb(n, i) for i in range(int(min(b, c)) + 1))
    return min(1.0, 2 * tail / 2**n)


def benjamini_hochberg(pvalues, *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """BH-adjusted p-values and which hypotheses are rejected at false discovery rate ``alpha``.

    scipy's ``false_discovery_control`` where installed; on the device the same step-up in numpy:
    ``p_(i) * m / i``, made monotone from the largest down, at most 1.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return p, np.zeros(0, dtype=bool)
    stats = _stats()
    if stats is not None:
        adjusted = stats.false_discovery_control(p, method="bh")
    else:
        order = np.argsort(p, kind="stable")
        scaled = p[order] * p.size / np.arange(1, p.size + 1)
        adjusted = np.empty_like(p)
        adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted, adjusted <= alpha


def classwise_mcnemar(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    alpha: float = 0.05,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> dict:
    """Which classes changed from model A to model B, each class overall and within each group.

    Parameters
    ----------
    y_true, pred_a, pred_b, groups : int arrays, shape (n,)
        True class, the predictions of A and of B on the same images, and the group of each.
    class_names, group_names : list of str
    alpha : float
        False discovery rate of the Benjamini-Hochberg correction (over the classes; over every
        (class, group) cell for the cells).
    min_effect : float
        Smallest |recall change| that counts as a change (module docstring).

    Returns
    -------
    dict
        ``per_class`` rows (discordant counts ``a_right_b_wrong`` / ``a_wrong_b_right``, McNemar
        ``p``, ``p_adjusted``, ``significant``, ``recall_change`` B - A, ``changed``:
        significant and ``|recall_change| >= min_effect``; the same under ``by_group``),
        ``significant_classes`` / ``share_significant`` (any size) and ``changed_classes`` /
        ``share_changed`` (at least ``min_effect``), ``alpha`` and ``min_effect``.
    """
    y_true, pred_a, pred_b, groups = (np.asarray(v) for v in (y_true, pred_a, pred_b, groups))
    right_a, right_b = pred_a == y_true, pred_b == y_true

    def cell(mask: np.ndarray) -> dict:
        b, c = int((right_a & ~right_b & mask).sum()), int((~right_a & right_b & mask).sum())
        n = int(mask.sum())
        return {
            "a_right_b_wrong": b,
            "a_wrong_b_right": c,
            "p": mcnemar_exact(b, c),
            "recall_change": (c - b) / n if n else None,
        }

    rows, by_group_p = [], []
    for k, name in enumerate(class_names):
        row = {"class": name, **cell(y_true == k), "by_group": {}}
        for g, group in enumerate(group_names):
            row["by_group"][group] = cell((y_true == k) & (groups == g))
            by_group_p.append((k, group))
        rows.append(row)
    adjusted, rejected = benjamini_hochberg([r["p"] for r in rows], alpha=alpha)
    for row, p_adj, sig in zip(rows, adjusted, rejected):
        mark_change(row, p_adj, sig, min_effect)
    group_p = [rows[k]["by_group"][g]["p"] for k, g in by_group_p]
    g_adjusted, g_rejected = benjamini_hochberg(group_p, alpha=alpha)
    for (k, g), p_adj, sig in zip(by_group_p, g_adjusted, g_rejected):
        mark_change(rows[k]["by_group"][g], p_adj, sig, min_effect)
    significant = [r["class"] for r in rows if r["significant"]]
    changed = [r["class"] for r in rows if r["changed"]]
    return {
        "test": "McNemar exact, Benjamini-Hochberg",
        "alpha": alpha,
        "min_effect": min_effect,
        "per_class": rows,
        "significant_classes": significant,
        "share_significant": len(significant) / len(rows) if rows else None,
        "changed_classes": changed,
        "share_changed": len(changed) / len(rows) if rows else None,
    }


def mark_change(
    row: dict, p_adjusted: float, significant: bool, min_effect: float, *, change_key: str = "recall_change"
) -> None:
    """Write ``p_adjusted``, ``significant`` and ``changed`` (significant and ``|row[change_key]|
    >= min_effect``) into a row of a paired test."""
    change = row.get(change_key)
    row["p_adjusted"], row["significant"] = float(p_adjusted), bool(significant)
    # the tolerance keeps a change of exactly min_effect (3/150 = 0.02) from missing by a rounding
    row["changed"] = bool(significant) and change is not None and abs(change) >= min_effect - 1e-12


def welch_classwise(
    recall_a: np.ndarray,
    top1_a: np.ndarray,
    recall_b: np.ndarray,
    top1_b: np.ndarray,
    *,
    class_names: list[str],
    alpha: float = 0.05,
) -> dict:
    """The study's multi-seed test: Welch's t-test per class on ``recall / top1`` across seeds.

    Parameters
    ----------
    recall_a, recall_b : array, shape (seeds, classes)
        Per-seed per-class recall of model A (e.g. the teacher) and model B (the student);
        ``nan`` where a class had no test image.
    top1_a, top1_b : array, shape (seeds,)
        Per-seed top-1 accuracy, the normaliser (Mohammadshahi & Ioannou 2024 compare class
        accuracy relative to overall accuracy, so a uniform accuracy drop is not a class change).
    class_names : list of str
    alpha : float
        False discovery rate of the Benjamini-Hochberg correction.

    Returns
    -------
    dict
        ``per_class`` rows (``p``, ``p_adjusted``, ``significant``, mean normalised accuracy of
        A and B), ``significant_classes`` and ``share_significant``. Welch's ``t`` is
        ``(mean_a - mean_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b)`` with Welch-Satterthwaite degrees
        of freedom (``scipy.stats.ttest_ind(equal_var=False)``). A class with no spread on
        either side gets ``p = 1`` if both means are equal and ``p = 0`` otherwise; a class whose
        recall is undefined in some seed gets ``p = 1``.
    """
    recall_a, recall_b = np.asarray(recall_a, float), np.asarray(recall_b, float)
    top1_a, top1_b = np.asarray(top1_a, float), np.asarray(top1_b, float)
    if (
        recall_a.ndim != 2
        or recall_b.ndim != 2
        or recall_a.shape[1] != recall_b.shape[1]
        or recall_a.shape[1] != len(class_names)
    ):
        raise EdgeKDError(
            f"welch_classwise: recalls must have shape (seeds, {len(class_names)}), got "
            f"{recall_a.shape} and {recall_b.shape}"
        )
    if len(top1_a) != len(recall_a) or len(top1_b) != len(recall_b):
        raise EdgeKDError("welch_classwise: one top-1 per seed is needed for each model")
    if len(recall_a) < 2 or len(recall_b) < 2:
        raise EdgeKDError(
            f"welch_classwise: needs at least 2 seeds per model, got {len(recall_a)} "
            f"and {len(recall_b)}; list several in the recipe's seeds"
        )
    from scipy import stats  # several seeds: a build-side study, never the device

    norm_a = recall_a / top1_a[:, None]
    norm_b = recall_b / top1_b[:, None]
    p = []
    for k in range(norm_a.shape[1]):
        a, b = norm_a[:, k], norm_b[:, k]
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            p.append(1.0)
        elif np.allclose(a, a[0]) and np.allclose(b, b[0]):  # no spread: t undefined
            p.append(1.0 if np.isclose(a[0], b[0]) else 0.0)
        else:
            p.append(float(stats.ttest_ind(a, b, equal_var=False).pvalue))
    adjusted, rejected = benjamini_hochberg(p, alpha=alpha)
    rows = [
        {
            "class": name,
            "mean_normalised_a": _mean_or_none(norm_a[:, k]),
            "mean_normalised_b": _mean_or_none(norm_b[:, k]),
            "p": p[k],
            "p_adjusted": float(adjusted[k]),
            "significant": bool(rejected[k]),
        }
        for k, name in enumerate(class_names)
    ]
    significant = [r["class"] for r in rows if r["significant"]]
    return {
        "test": "Welch t on recall/top-1 across seeds, Benjamini-Hochberg",
        "alpha": alpha,
        "seeds": [len(norm_a), len(norm_b)],
        "per_class": rows,
        "significant_classes": significant,
        "share_significant": len(significant) / len(rows),
    }


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if np.isfinite(values).all() else None


def welch_from_metrics(
    metrics_a: list[dict], metrics_b: list[dict], *, class_names: list[str], alpha: float = 0.05
) -> dict:
    """:func:`welch_classwise` on per-seed outputs of
    :func:`edgekd.fairness.metrics.evaluate_predictions` (one dict per seed and model)."""

    def arrays(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        recall = [
            [np.nan if row["recall"] is None else row["recall"] for row in m["per_class"]] for m in runs
        ]
        return np.asarray(recall, float).reshape(len(runs), -1), np.asarray([m["top1"] for m in runs], float)

    (recall_a, top1_a), (recall_b, top1_b) = arrays(metrics_a), arrays(metrics_b)
    return welch_classwise(recall_a, top1_a, recall_b, top1_b, class_names=class_names, alpha=alpha)
