"""The per-cell effect of one compression step, against a 3-class, 2-group example worked by hand."""

import numpy as np
import pytest

from edgekd.fairness.compression import (
    cell_agreement,
    changed_indices,
    compression_effect,
    worst_cell_agreement,
)

CLASSES, GROUPS = ["a", "b", "c"], ["warm", "cool"]
# cell (a, warm): 4 images, before right 3 times; the step breaks two of them -> b = 2, c = 0
# cell (a, cool): 3 images; the step mends the one wrong -> b = 0, c = 1
# cells (b, warm) and (b, cool): 2 images each, untouched (one wrong prediction kept in (b, cool))
# cell (c, warm): 1 image, broken -> b = 1; cell (c, cool): empty
Y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2])
G = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0])
BEFORE = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 2, 2])
AFTER = np.array([0, 1, 2, 1, 0, 0, 0, 1, 1, 1, 2, 0])


def effect(**kwargs):
    return compression_effect(Y, BEFORE, AFTER, G, class_names=CLASSES, group_names=GROUPS, **kwargs)


def test_cells_by_hand():
    cells = {(r["class"], r["group"]): r for r in effect()["per_cell"]}
    assert set(cells) == {("a", "warm"), ("a", "cool"), ("b", "warm"), ("b", "cool"), ("c", "warm")}
    a_warm = cells["a", "warm"]
    assert (a_warm["images"], a_warm["agreement"], a_warm["right_to_wrong"], a_warm["wrong_to_right"]) == (
        4,
        0.5,
        2,
        0,
    )
    assert a_warm["accuracy_change"] == -0.5
    assert a_warm["p"] == pytest.approx(0.5)  # 2 * P(Binomial(2, 1/2) <= 0)
    a_cool = cells["a", "cool"]
    assert (a_cool["agreement"], a_cool["right_to_wrong"], a_cool["wrong_to_right"], a_cool["p"]) == (
        pytest.approx(2 / 3),
        0,
        1,
        1.0,
    )
    assert a_cool["accuracy_change"] == pytest.approx(1 / 3)
    assert cells["b", "cool"]["agreement"] == 1.0 and cells["b", "cool"]["p"] == 1.0
    assert (cells["c", "warm"]["agreement"], cells["c", "warm"]["right_to_wrong"]) == (0.0, 1)
    # Benjamini-Hochberg over the five cells: the smallest p (0.5) adjusts to min(2.5, 2.5, 5/3, 5/4, 1)
    assert all(r["p_adjusted"] == pytest.approx(1.0) for r in cells.values())
    assert not any(r["significant"] or r["changed"] for r in cells.values())


def test_groups_overall_and_worst_by_hand():
    result = effect()
    groups = {r["group"]: r for r in result["per_group"]}
    warm = groups["warm"]
    assert (warm["images"], warm["agreement"], warm["right_to_wrong"], warm["wrong_to_right"]) == (
        7,
        pytest.approx(4 / 7),
        3,
        0,
    )
    assert warm["p"] == pytest.approx(0.25)  # 2 * (1/2)^3
    assert groups["cool"]["agreement"] == pytest.approx(0.8)
    overall = result["overall"]
    assert (
        overall["images"],
        overall["agreement"],
        overall["right_to_wrong"],
        overall["wrong_to_right"],
    ) == (12, pytest.approx(8 / 12), 3, 1)
    assert overall["p"] == pytest.approx(0.625)  # 2 * P(Binomial(4, 1/2) <= 1) = 2 * 5/16
    assert overall["accuracy_change"] == pytest.approx(-2 / 12)
    assert result["changed_images"] == 4
    assert result["worst_cell"] == {"class": "c", "group": "warm", "agreement": 0.0, "images": 1}
    assert effect(min_support=2)["worst_cell"] == {
        "class": "a",
        "group": "warm",
        "agreement": 0.5,
        "images": 4,
    }
    assert result["worst_group"]["group"] == "warm"


def test_a_real_change_is_significant_and_named():
    # 40 images of (a, warm) all right before; the step breaks 12 of them: McNemar p = 2^-11
    y, g = np.zeros(80, int), np.repeat([0, 1], 40)
    before = y.copy()
    after = y.copy()
    after[:12] = 1
    result = compression_effect(y, before, after, g, class_names=["a", "b"], group_names=GROUPS)
    cells = {(r["class"], r["group"]): r for r in result["per_cell"]}
    assert cells["a", "warm"]["p"] == pytest.approx(2 * 0.5**12)
    assert cells["a", "warm"]["significant"] and cells["a", "warm"]["changed"]
    assert not cells["a", "cool"]["significant"]
    assert result["changed_cells"] == ["a / warm"]
    assert result["overall"]["agreement"] == pytest.approx(68 / 80)


def test_matrix_worst_and_indices_agree_with_the_rows():
    agreement, images = cell_agreement(Y, BEFORE, AFTER, G, num_classes=3, num_groups=2)
    assert images.tolist() == [[4, 3], [2, 2], [1, 0]]
    assert np.isnan(agreement[2, 1])
    for row in effect()["per_cell"]:
        c, g = CLASSES.index(row["class"]), GROUPS.index(row["group"])
        assert agreement[c, g] == pytest.approx(row["agreement"])
    worst = worst_cell_agreement(Y, BEFORE, AFTER, G, class_names=CLASSES, group_names=GROUPS, min_support=2)
    assert worst == {"class": "a", "group": "warm", "agreement": 0.5, "images": 4}
    assert changed_indices(BEFORE, AFTER).tolist() == [1, 2, 4, 11]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per test image"):
        compression_effect(Y, BEFORE[:-1], AFTER, G, class_names=CLASSES, group_names=GROUPS)
