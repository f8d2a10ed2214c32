"""Issue 16, part 5: several protected attributes. Groups are intersections (CelebA ``protected:
[Male, Young]``, several CSV group columns, several WIDER attributes); the card's gaps run over the
groups with support (``card.min_support``), names the cells too small to measure and reports each
attribute alone; the device's count-based numbers equal the card's."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from compare import assert_close_tree
from PIL import Image

from edgekd.card.build import build_card
from edgekd.card.evaluation import evaluate
from edgekd.card.html import render_html
from edgekd.card.markdown import render_markdown
from edgekd.card.schema import check_card
from edgekd.data import load_data
from edgekd.data.groups import ProtectedAttributes
from edgekd.errors import EdgeKDError
from edgekd.fairness.counts import CellCounts
from edgekd.fairness.metrics import evaluate_predictions
from edgekd.fairness.reference import fairlearn_metrics
from edgekd.recipe import parse_recipe

# CelebA's 40 attributes in the order of list_attr_celeba.txt
CELEBA = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
GROUPS = ["Male=0,Young=0", "Male=0,Young=1", "Male=1,Young=0", "Male=1,Young=1"]

# Test split, images per (class, group): class 0 is "not Smiling", class 1 "Smiling"; group index
# = 2 * Male + Young. The (Smiling, Male=0,Young=0) cell has 2 images: under min_support 3.
TEST_CELLS = {(0, 0): 4, (0, 1): 4, (0, 2): 4, (0, 3): 4, (1, 0): 2, (1, 1): 4, (1, 2): 4, (1, 3): 4}
# How many images of each cell the hand-made student gets right (recall = right / images):
#   not Smiling: 3/4, 4/4, 2/4, 1/4 -> disparity max - min = 1 - 1/4 = 0.75
#   Smiling:     0/2 (left out), 2/4, 4/4, 3/4 -> disparity over the three others: 1 - 1/2 = 0.5
#   (with the small cell: 1 - 0 = 1.0)
RIGHT = {(0, 0): 3, (0, 1): 4, (0, 2): 2, (0, 3): 1, (1, 0): 0, (1, 1): 2, (1, 2): 4, (1, 3): 3}


def _rows(cells: dict, split: int) -> list[tuple[int, int, int, int]]:
    """(split, smiling, male, young) per image of ``cells``."""
    return [(split, c, g // 2, g % 2) for (c, g), n in sorted(cells.items()) for _ in range(n)]


def write_celeba(root: Path, rows: list[tuple[int, int, int, int]]) -> None:
    """CelebA as published: list_attr_celeba.txt (count, the 40 names, then ``<file>`` and 40
    values of 1 or -1 separated by spaces) and list_eval_partition.txt, images in img_align_celeba/."""
    lines, partition = [str(len(rows)), " ".join(CELEBA)], []
    for i, (split, smiling, male, young) in enumerate(rows, start=1):
        name = f"{i:06d}.jpg"
        values = ["-1"] * 40
        for attr, on in (("Smiling", smiling), ("Male", male), ("Young", young)):
            values[CELEBA.index(attr)] = "1" if on else "-1"
        lines.append(f"{name} " + " ".join(f"{v:>2}" for v in values))  # padded, as published
        partition.append(f"{name} {split}")
        (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 14), (i % 250, 40, 90)).save(root / "img_align_celeba" / name)
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")


TRAIN_CELLS = {(0, 0): 2, (0, 1): 1, (0, 2): 3, (0, 3): 1, (1, 0): 1, (1, 1): 2, (1, 2): 1, (1, 3): 1}


@pytest.fixture
def celeba(tmp_path):
    root = tmp_path / "celeba"
    write_celeba(root, _rows(TRAIN_CELLS, 0) + _rows({(0, 0): 1, (1, 3): 1}, 1) + _rows(TEST_CELLS, 2))
    return root


def _recipe(data: dict, base: Path, card: dict | None = None):
    return parse_recipe(
        {
            "name": "groups",
            "data": data,
            "card": card or {"bootstrap_resamples": 0},
            "export": {"onnx": {"min_agreement": 0.5}},
        },
        base_dir=base,
    )


def _celeba_recipe(tmp_path, protected, **card):
    return _recipe(
        {
            "source": "celeba",
            "root": "celeba",
            "image_size": 16,
            "protected": protected,
            "cache_dir": str(tmp_path / "cache"),
        },
        tmp_path,
        {"bootstrap_resamples": 0, **card},
    )


def _student(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Right on the first RIGHT[cell] images of each cell, the other class on the rest."""
    pred = 1 - labels
    for (c, g), right in RIGHT.items():
        pred[np.flatnonzero((labels == c) & (groups == g))[:right]] = c
    return pred


# --------------------------------------------------------------------------------- groups
def test_intersections_are_named_and_ordered_lexicographically():
    attrs = ProtectedAttributes(("Male", "Young"), (("0", "1"), ("0", "1")))
    assert attrs.group_names() == GROUPS
    assert attrs.combine(np.array([[0, 0], [0, 1], [1, 0], [1, 1]])).tolist() == [0, 1, 2, 3]
    three = ProtectedAttributes(("a", "b"), (("x", "y", "z"), ("p", "q")))
    assert three.group_names()[:3] == ["a=x,b=p", "a=x,b=q", "a=y,b=p"]
    names, value_of = three.marginal(1)
    assert names == ["b=p", "b=q"] and value_of.tolist() == [0, 1, 0, 1, 0, 1]
    single = ProtectedAttributes(("Male",), (("0", "1"),), single_names=("not Male", "Male"))
    assert single.group_names() == ["not Male", "Male"] and not single.several


def test_celeba_counts_per_intersection_equal_the_hand_counted(celeba, tmp_path):
    data = load_data(_celeba_recipe(tmp_path, ["Male", "Young"]).data, seed=0)
    assert data.group_names == GROUPS and data.protected_attribute == "Male, Young"
    for split, cells in (("train", TRAIN_CELLS), ("test", TEST_CELLS)):
        got = getattr(data, split)
        counted = {
            (c, g): int(((got.labels == c) & (got.groups == g)).sum()) for c in (0, 1) for g in range(4)
        }
        assert counted == cells, split
    assert data.val.groups.tolist() == [0, 3]
    # one attribute as a string or a one-element list: the groups it always had
    for protected in ("Male", ["Male"]):
        one = load_data(_celeba_recipe(tmp_path, protected).data, seed=0)
        assert one.group_names == ["not Male", "Male"] and one.protected_attribute == "Male"
        assert one.test.groups.tolist() == (data.test.groups // 2).tolist()


def test_card_disparity_over_four_groups_with_the_small_cell_named_and_left_out(celeba, tmp_path):
    recipe = _celeba_recipe(tmp_path, ["Male", "Young"], min_support=3)
    data = load_data(recipe.data, seed=0)
    labels, groups = data.test.labels, data.test.groups
    student = _student(labels, groups)
    metrics = evaluate_predictions(
        labels, student, groups, class_names=data.class_names, group_names=data.group_names, min_support=3
    )
    not_smiling, smiling = metrics["per_class"]
    assert not_smiling["recall_by_group"] == dict(zip(GROUPS, [0.75, 1.0, 0.5, 0.25]))
    assert smiling["recall_by_group"] == dict(zip(GROUPS, [0.0, 0.5, 1.0, 0.75]))  # still shown
    assert not_smiling["disparity"] == pytest.approx(0.75)
    assert smiling["disparity"] == pytest.approx(0.5)  # the 2-image cell is left out
    assert metrics["mean_abs_disparity"] == pytest.approx((0.75 + 0.5) / 2)
    # P(pred = Smiling | g): g0 1/6, g1 2/8, g2 6/8, g3 6/8 -> DPD 3/4 - 1/6 (every group has >= 3)
    assert smiling["dpd"] == pytest.approx(0.75 - 1 / 6)
    # EOD(Smiling) over g1-g3 (g0 has 2 positives): TPR 1/2, 1, 3/4; FPR 0, 2/4, 3/4 -> 0.75
    assert smiling["eod"] == pytest.approx(0.75)
    every = evaluate_predictions(
        labels, student, groups, class_names=data.class_names, group_names=data.group_names
    )
    assert every["per_class"][1]["disparity"] == pytest.approx(1.0)  # min_support 1: counted
    assert every["mean_abs_disparity"] == pytest.approx((0.75 + 1.0) / 2)

    evaluations = {
        name: evaluate(name, pred, data, kind="torch", size_bytes=1000, min_support=3)
        for name, pred in (("teacher", labels.copy()), ("baseline", student), ("student", student))
    }
    evaluations["onnx"] = evaluate(
        "onnx",
        student,
        data,
        kind="onnx",
        size_bytes=1000,
        file="model.onnx",
        details={"export": {"argmax_agreement": 1.0}},
        reference=evaluations["student"],
        min_support=3,
    )
    card = check_card(json.loads(json.dumps(build_card(recipe, data, evaluations))))
    assert card["data"]["test_counts_by_group"] == dict(zip(GROUPS, [6, 8, 8, 8]))
    assert card["data"]["min_support"] == 3
    assert card["data"]["small_cells"] == [{"class": "Smiling", "group": "Male=0,Young=0", "images": 2}]
    assert card["data"]["small_groups"] == []
    assert card["models"]["student"]["metrics"]["mean_abs_disparity"] == pytest.approx(0.625)

    # each attribute alone. Male: not Smiling 7/8 vs 3/8 -> +0.5; Smiling 2/6 vs 7/8 -> -13/24.
    # Young: not Smiling 5/8 vs 5/8 -> 0; Smiling 4/6 vs 5/8 -> +1/24.
    male, young = card["by_attribute"]["Male"], card["by_attribute"]["Young"]
    assert male["groups"] == ["Male=0", "Male=1"] and young["groups"] == ["Young=0", "Young=1"]
    assert male["test_counts_by_group"] == {"Male=0": 14, "Male=1": 16}
    assert male["small_cells"] == [] and young["small_cells"] == []
    alone = male["models"]["student"]
    assert alone["disparity_by_class"] == pytest.approx({"not Smiling": 0.5, "Smiling": -13 / 24})
    assert alone["mean_abs_disparity"] == pytest.approx((0.5 + 13 / 24) / 2)
    assert young["models"]["student"]["mean_abs_disparity"] == pytest.approx(1 / 48)
    assert card["by_attribute"]["Male"]["models"]["teacher"]["mean_abs_disparity"] == 0.0

    # the device (bench --eval) reads min_support from the bundle's card: the card's numbers
    from edgekd.bench.evaluate import evaluate_artifact
    from edgekd.bundle.eval_set import write_eval_set

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "card.json").write_text(json.dumps(card))
    write_eval_set(bundle, data.test.images, labels, groups)
    preprocess = data.preprocess()
    on_device = evaluate_artifact(None, bundle, preprocess, batch=8, predictions=student)
    assert_close_tree(
        {k: on_device[k] for k in ("mean_abs_disparity", "dpd", "eod", "per_class")},
        {
            k: card["models"]["student"]["metrics"][k]
            for k in ("mean_abs_disparity", "dpd", "eod", "per_class")
        },
    )
    assert preprocess["protected_groups"] == GROUPS

    md = render_markdown(card)
    assert "Protected attributes: **Male, Young**; the groups are their intersections" in md
    assert "- Male=0,Young=0 in class Smiling: 2 images, left out" in md
    assert "## Each protected attribute alone" in md
    assert "| Male (Male=0, Male=1) | student | 0.521 | 0.542 (Smiling) |" in md
    page = render_html(card)
    assert "<h2>Each protected attribute alone</h2>" in page and "Male=0,Young=0 in class Smiling" in page


def test_an_absent_intersection_is_named_with_0_images_and_the_card_does_not_crash(tmp_path):
    root = tmp_path / "celeba"
    test = {cell: n for cell, n in TEST_CELLS.items() if cell[1] != 2}  # nobody Male=1,Young=0
    write_celeba(root, _rows(TRAIN_CELLS, 0) + _rows({(0, 0): 1}, 1) + _rows(test, 2))
    recipe = _celeba_recipe(tmp_path, ["Male", "Young"], min_support=3)
    data = load_data(recipe.data, seed=0)
    assert data.group_names == GROUPS and 2 not in data.test.groups
    pred = _student(data.test.labels, data.test.groups)
    evaluations = {
        name: evaluate(name, pred, data, kind="torch", size_bytes=1, min_support=3)
        for name in ("teacher", "baseline", "student")
    }
    evaluations["onnx"] = evaluate(
        "onnx",
        pred,
        data,
        kind="onnx",
        size_bytes=1,
        min_support=3,
        details={"export": {"argmax_agreement": 1.0}},
    )
    card = check_card(json.loads(json.dumps(build_card(recipe, data, evaluations))))
    assert card["data"]["test_counts_by_group"]["Male=1,Young=0"] == 0
    assert {"class": "not Smiling", "group": "Male=1,Young=0", "images": 0} in card["data"]["small_cells"]
    assert card["data"]["small_groups"] == [{"group": "Male=1,Young=0", "images": 0}]
    # not Smiling over g0, g1, g3: 3/4, 1, 1/4 -> 0.75; Smiling over g1, g3: 1/2, 3/4 -> 0.25
    assert card["models"]["student"]["metrics"]["mean_abs_disparity"] == pytest.approx(0.5)
    assert (
        "- groups with fewer than 3 test images in all, left out of DPD: Male=1,Young=0 (0 images)"
        in render_markdown(card)
    )


# ------------------------------------------------------------------- counts equal fairlearn
@pytest.mark.parametrize("min_support", [1, 3, 20])
def test_count_metrics_equal_fairlearn_over_intersections_with_min_support(celeba, tmp_path, min_support):
    data = load_data(_celeba_recipe(tmp_path, ["Male", "Young"]).data, seed=0)
    labels, groups = data.test.labels, data.test.groups
    for pred in (_student(labels, groups), 1 - labels, np.zeros_like(labels)):
        names = dict(class_names=data.class_names, group_names=data.group_names, min_support=min_support)
        assert_close_tree(
            evaluate_predictions(labels, pred, groups, **names),
            fairlearn_metrics(labels, pred, groups, **names),
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_count_metrics_equal_fairlearn_with_cells_either_side_of_min_support(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 400)
    groups = rng.choice(6, 400, p=[0.3, 0.3, 0.2, 0.1, 0.07, 0.03])  # cells from ~4 to ~40 images
    pred = np.where(rng.random(400) < 0.6, y, rng.integers(0, 3, 400))
    names = dict(class_names=list("abc"), group_names=[f"g{i}" for i in range(6)], min_support=15)
    counted = evaluate_predictions(y, pred, groups, **names)
    assert_close_tree(counted, fairlearn_metrics(y, pred, groups, **names))
    counts = CellCounts(y, pred, groups, num_classes=3, num_groups=6, min_support=15)
    assert counts.small_cells.any() and not counts.small_cells.all()


# ------------------------------------------------------------------------------------- csv
def test_csv_two_group_columns_make_intersections(tmp_path):
    root = tmp_path / "shop"
    (root / "img").mkdir(parents=True)
    rows = [
        ("a.png", "cat", "f", "old"),
        ("b.png", "dog", "m", "young"),
        ("c.png", "dog", "f", "young"),
        ("d.png", "cat", "m", "old"),
    ]
    for i, (name, *_) in enumerate(rows):
        Image.new("RGB", (10, 10), (60 * i, 0, 0)).save(root / "img" / name)
    for split in ("train", "val", "test"):
        (root / f"{split}.csv").write_text(
            "path,label,sex,age\n" + "".join(f"img/{p},{label},{sex},{age}\n" for p, label, sex, age in rows)
        )
    base = {
        "source": "csv",
        "root": "shop",
        "image_size": 16,
        "group_column": ["sex", "age"],
        "cache_dir": str(tmp_path / "cache"),
    }
    data = load_data(_recipe(base, tmp_path).data, seed=0)
    assert data.group_names == ["sex=f,age=old", "sex=f,age=young", "sex=m,age=old", "sex=m,age=young"]
    assert data.test.groups.tolist() == [0, 3, 1, 2] and data.protected_attribute == "sex, age"
    ordered = load_data(_recipe({**base, "groups": {"age": ["young", "old"]}}, tmp_path).data, seed=0)
    assert ordered.group_names[:2] == ["sex=f,age=young", "sex=f,age=old"]
    assert ordered.test.groups.tolist() == [1, 2, 0, 3]
    single = load_data(_recipe({**base, "group_column": "sex"}, tmp_path).data, seed=0)
    assert single.group_names == ["f", "m"] and single.protected_attribute == "sex"  # its column
    with pytest.raises(EdgeKDError, match="no column 'region'"):
        load_data(_recipe({**base, "group_column": ["sex", "region"]}, tmp_path).data, seed=0)


# ----------------------------------------------------------------------------------- wider
def test_wider_attribute_takes_several_attributes(tmp_path):
    root = tmp_path / "wider"

    def person(male, hair):
        values = [0] * 14
        values[0], values[1] = male, hair
        return {"bbox": [1, 1, 8, 8], "attribute": values}

    trainval = [
        ("train/0--Parade/a.jpg", [person(1, 1)]),
        ("train/0--Parade/b.jpg", [person(-1, -1)]),
        ("train/0--Parade/c.jpg", [person(1, 0)]),
        ("val/0--Parade/d.jpg", [person(-1, 1)]),
    ]
    test = [("test/0--Parade/e.jpg", [person(1, -1), person(1, -1)])]
    for name, _ in trainval + test:
        (root / "Image" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (9, 9, 9)).save(root / "Image" / name)
    for filename, items in (("wider_attribute_trainval.json", trainval), ("wider_attribute_test.json", test)):
        doc = {
            "images": [{"file_name": n, "scene_id": 0, "targets": t} for n, t in items],
            "attribute_id_map": {"0": "Male", "1": "longHair"},
            "scene_id_map": {"0": "Parade"},
        }
        (root / filename).write_text(json.dumps(doc))
    base = {"source": "wider_attribute", "root": "wider", "image_size": 16, "cache_dir": str(tmp_path / "c")}
    data = load_data(_recipe({**base, "protected": ["Male", "longHair"]}, tmp_path).data, seed=0)
    assert data.group_names == [
        "Male=0,longHair=0",
        "Male=0,longHair=1",
        "Male=1,longHair=0",
        "Male=1,longHair=1",
    ]
    assert data.train.groups.tolist() == [3, 0] and data.val.groups.tolist() == [1]
    assert data.test.groups.tolist() == [2]
    assert data.description["excluded_unknown_attribute"] == {"train": 1, "val": 0, "test": 0}
    kept = load_data(
        _recipe({**base, "protected": ["Male", "longHair"], "unknown": "as_group"}, tmp_path).data, seed=0
    )
    assert len(kept.group_names) == 9 and kept.group_names[kept.train.groups[2]] == "Male=1,longHair=unknown"
    gender = load_data(_recipe(base, tmp_path).data, seed=0)  # the default: gender as always
    assert gender.group_names == ["female", "male"] and gender.protected_attribute == "gender"
    with pytest.raises(
        EdgeKDError,
        match="data.protected: 'Hat' is not a WIDER Attribute attribute; "
        "choose from the annotations' attribute_id_map: Male, longHair",
    ):
        load_data(_recipe({**base, "protected": ["Male", "Hat"]}, tmp_path).data, seed=0)


# ------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "data, card, needle",
    [
        ({"protected": ["Male", "Male"]}, {}, r"data.protected = \['Male', 'Male'\]: 'Male' is listed twice"),
        ({"protected": []}, {}, r"data.protected = \[\]: an empty list; name at least one CelebA attribute"),
        ({}, {"min_support": 0}, r"card.min_support = 0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_recipe_values_are_one_line(celeba, tmp_path, data, card, needle):
    with pytest.raises(EdgeKDError, match=needle) as err:
        _recipe({"source": "celeba", "root": "celeba", **data}, tmp_path, card)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "data, needle",
    [
        (
            {"source": "celeba", "root": "celeba", "protected": ["Male", "Beard"]},
            "data.protected: 'Beard' is not a CelebA attribute; choose one of: 5_o_Clock_Shadow",
        ),
        (
            {"source": "csv", "root": "celeba", "group_column": ["a", "b"], "groups": ["x", "y"]},
            r"data.groups = \['x', 'y'\]: with several group columns, map each column to its value names",
        ),
        (
            {"source": "csv", "root": "celeba", "group_column": ["a", "b"], "groups": {"c": ["x"]}},
            r"data.groups = \{'c': \['x'\]\}: 'c' is not a group column; the group columns are: a, b",
        ),
    ],
)
def test_bad_attributes_are_one_line(celeba, tmp_path, data, needle):
    with pytest.raises(EdgeKDError, match=needle) as err:
        load_data(_recipe({**data, "cache_dir": str(tmp_path / "c")}, tmp_path).data, seed=0)
    assert "\n" not in str(err.value)


# -------------------------------------------------------------- downstream: four groups
def test_reweighing_calibration_selection_and_adversary_take_four_groups():
    torch = pytest.importorskip("torch")
    from edgekd.data.splits import Split, cell_weights
    from edgekd.debias import AdversarialDebiasing
    from edgekd.distill import Batch, CrossEntropy
    from edgekd.train.selection import validation_scores

    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    groups = np.array([0, 1, 3, 3, 3, 1, 0, 0])  # group 2 (an intersection) absent
    weights = cell_weights(labels, groups)
    # (class 0, group 0): P(c) 4/8, P(g) 3/8, P(c, g) 2/8 -> 0.75
    assert weights[0] == pytest.approx(0.5 * 0.375 / 0.25) and weights.mean() == pytest.approx(1.0)
    drawn = Split(np.zeros((8, 2, 2, 3), np.uint8), labels, groups).cell_balanced(6, seed=0)
    assert len({(c, g) for c, g in zip(drawn.labels, drawn.groups)}) == 6  # one of each cell first
    scores = validation_scores(CellCounts(labels, labels, groups, num_classes=2, num_groups=4))
    assert scores["val_worst_cell_recall"] == 1.0 and scores["val_cell_balanced_accuracy"] == 1.0
    adversary = AdversarialDebiasing(CrossEntropy(), weight=0.5, hidden=(4,))
    adversary.build(num_classes=2, num_groups=4, feature_width=3)
    batch = Batch(images=torch.zeros(8), labels=torch.from_numpy(labels), groups=torch.from_numpy(groups))
    adversary(torch.randn(8, 2, requires_grad=True), batch).backward()
    record = adversary.epoch_metrics()
    assert record["adversary_reference"] == pytest.approx(3 / 8)  # the largest group's share


def test_single_attribute_card_keeps_its_numbers_under_min_support_1_and_20():
    """A cell of 50 images (the card's test of issue 12) is measured under 1 and under 20 alike:
    the default changes nothing where every cell has 20 images."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 100)
    groups = np.tile([0, 1], 200)
    pred = np.where(rng.random(400) < 0.7, y, (y + 1) % 4)
    data = SimpleNamespace(
        test=SimpleNamespace(labels=y, groups=groups), class_names=list("abcd"), group_names=["a", "b"]
    )
    one, twenty = (
        evaluate("m", pred, data, kind="torch", size_bytes=1, min_support=m).metrics for m in (1, 20)
    )
    assert one == twenty
