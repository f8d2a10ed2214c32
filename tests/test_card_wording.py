"""What card.md says in words: the attribute's own name, changed classes with an effect size, the
worst (class, group) cell of every model, no negative zero, no local path."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from edgekd.card.build import build_card, public_description
from edgekd.card.evaluation import evaluate
from edgekd.card.html import render_html
from edgekd.card.io import load_card
from edgekd.card.markdown import render_markdown
from edgekd.card.numbers import fixed, general, signed
from edgekd.fairness.metrics import evaluate_predictions, worst_cell
from edgekd.fairness.significance import DEFAULT_MIN_EFFECT, classwise_mcnemar, mcnemar_exact
from edgekd.recipe import parse_recipe

FIXTURES = Path(__file__).parent / "fixtures"
NEGATIVE_ZERO = re.compile(r"(?<![\w.])-0(\.0+)?(?![\d.])")  # -0, -0.0, -0.000, not -0.001


# ------------------------------------------------------------------------------------ numbers
def test_a_value_that_rounds_to_zero_prints_without_a_sign():
    assert fixed(-0.0004) == "0.000" and fixed(-0.0) == "0.000" and fixed(-0.0006) == "-0.001"
    assert fixed(-0.04, 1) == "0.0" and fixed(0.1234) == "0.123" and fixed(None) == "-"
    assert signed(-0.0004) == "0.000" and signed(0.0) == "0.000" and signed(0.0004) == "0.000"
    assert signed(0.0123) == "+0.012" and signed(-0.0346) == "-0.035" and signed(None) == "-"
    assert general(-0.0) == "0" and general(-1e-7) == "-1e-07" and general(0.25) == "0.25"
    assert NEGATIVE_ZERO.search("a -0.000 b") and NEGATIVE_ZERO.search("| -0 |")
    assert not NEGATIVE_ZERO.search("-0.001 +0.000 12-0.5")


# ---------------------------------------------------------------------------------- worst cell
def test_worst_cell_is_the_lowest_measured_recall_hand_worked():
    # cells (class, group): (0, a) 4 images 3 right: 0.75; (0, b) 4 images 4 right; (1, a) 4 images
    # 2 right: 0.5; (1, b) 2 images, none right: 0.0 but under min_support 3, so not measured
    y = np.array([0] * 8 + [1] * 6)
    groups = np.array([0] * 4 + [1] * 4 + [0] * 4 + [1] * 2)
    pred = np.array([0, 0, 0, 1] + [0] * 4 + [1, 1, 0, 0] + [0, 0])
    metrics = evaluate_predictions(
        y, pred, groups, class_names=["cat", "dog"], group_names=["a", "b"], min_support=3
    )
    assert metrics["worst_cell"] == {"class": "dog", "group": "a", "recall": 0.5, "images": 4}
    every = evaluate_predictions(y, pred, groups, class_names=["cat", "dog"], group_names=["a", "b"])
    assert every["worst_cell"] == {"class": "dog", "group": "b", "recall": 0.0, "images": 2}
    from edgekd.fairness.counts import CellCounts

    none = CellCounts(y, pred, groups, num_classes=2, num_groups=2, min_support=100)
    assert worst_cell(none, ["cat", "dog"], ["a", "b"]) is None


# ------------------------------------------------------------------------------- significance
def test_a_class_changes_when_significant_and_at_least_min_effect():
    # 2000 images a class. cat: A right, B wrong on 0 images, B right and A wrong on 20: recall
    # +0.01, p = 2 / 2^20: significant, under 0.02. dog: 100 -> +0.05: changed. fox: no change.
    per = 2000
    y = np.repeat([0, 1, 2], per)
    groups = np.tile([0, 1], len(y) // 2)
    a = y.copy()
    a[:20] = 1  # A wrong on 20 cats
    a[per : per + 100] = 0  # and on 100 dogs
    b = y.copy()  # B right everywhere
    test = classwise_mcnemar(y, a, b, groups, class_names=["cat", "dog", "fox"], group_names=["x", "y"])
    assert test["min_effect"] == DEFAULT_MIN_EFFECT == 0.02
    assert [row["recall_change"] for row in test["per_class"]] == [0.01, 0.05, 0.0]
    assert test["significant_classes"] == ["cat", "dog"] and test["changed_classes"] == ["dog"]
    assert test["share_changed"] == pytest.approx(1 / 3)
    assert test["per_class"][0]["p"] == pytest.approx(2 / 2**20)
    # within a group: dog's 100 are 50 per group: +0.05 each, changed; cat's +0.01, not
    assert test["per_class"][1]["by_group"]["x"]["changed"]
    assert test["per_class"][0]["by_group"]["x"]["significant"]
    assert not test["per_class"][0]["by_group"]["x"]["changed"]
    # exactly min_effect counts (3 of 150 = 0.02 is not lost to rounding)
    loose = classwise_mcnemar(
        y, a, b, groups, class_names=["cat", "dog", "fox"], group_names=["x", "y"], min_effect=0.01
    )
    assert loose["changed_classes"] == ["cat", "dog"]


def test_min_effect_hides_no_change_a_200_image_class_can_resolve():
    # The default's justification: with 200 test images of a class (the default 800-image
    # synthetic test split, 4 classes) no change under 0.02 (|c - b| <= 3) is significant even
    # before the correction, so the threshold only bites on larger test splits.
    n = 200
    for b in range(n + 1):
        for c in range(b, min(b + 3, n - b) + 1):
            assert mcnemar_exact(b, c) > 0.05, (b, c)
    assert mcnemar_exact(0, 6) < 0.05 and 6 / n == pytest.approx(0.03)  # the smallest that is
    # 1000 images a class (Fashion-MNIST's 10,000): 0.006 is already significant
    assert mcnemar_exact(0, 6) < 0.05 and 6 / 1000 < DEFAULT_MIN_EFFECT


# ------------------------------------------------------------------------------ rendered card
class _Split(SimpleNamespace):
    def __len__(self):
        return len(self.labels)


def _card() -> dict:
    """Teacher right everywhere; the student misses 60 of 400 foxes (recall change -0.15) and 3
    of 400 cats (-0.0075: significant at alpha 0.05? no, p = 0.25); in group night it never
    recognises an owl (worst cell 0.000)."""
    per = 400
    y = np.repeat(np.arange(4), per)
    groups = np.tile([0, 1], len(y) // 2)
    student = y.copy()
    student[2 * per : 2 * per + 60] = 0  # 60 foxes
    student[:3] = 1  # 3 cats
    student[(y == 3) & (groups == 1)] = 0  # every night owl
    recipe = parse_recipe({"name": "words", "card": {"bootstrap_resamples": 0}})
    data = SimpleNamespace(
        test=_Split(labels=y, groups=groups),
        train=[0] * 10,
        val=[0] * 5,
        num_classes=4,
        class_names=["cat", "dog", "fox", "owl"],
        group_names=["day", "night"],
        protected_attribute="background",
        description={
            "source": "csv",
            "synthetic": False,
            "root": "/home/ana/private/shop",
            "summary": "Images from /home/ana/private/shop listed in train.csv",
            "skipped_bad_image_examples": [
                "/home/ana/private/shop/val.csv line 3: img/x.png: cannot identify image file"
            ],
        },
    )
    evaluations = {
        name: evaluate(name, pred, data, kind="torch", size_bytes=1_000_000)
        for name, pred in (("teacher", y), ("baseline", y), ("student", student))
    }
    evaluations["onnx"] = evaluate(
        "onnx",
        student,
        data,
        kind="onnx",
        size_bytes=1_000_000,
        file="model.onnx",
        precision="fp32",
        details={"export": {"argmax_agreement": 1.0}},
        reference=evaluations["student"],
    )
    return build_card(recipe, data, evaluations)


def test_headline_names_the_worst_cell_of_every_model():
    card = _card()
    md = render_markdown(card)
    header = next(line for line in md.splitlines() if line.startswith("| model | kind |"))
    assert "worst recall (class, background)" in header
    rows = {
        line.split(" | ")[0][2:]: line
        for line in md.splitlines()
        if line.startswith(
            ("| teacher | torch |", "| baseline | torch |", "| student | torch |", "| onnx | onnx |")
        )
    }
    assert len(rows) == 4
    assert "| 1.000 (cat, day) |" in rows["teacher"] and "| 1.000 (cat, day) |" in rows["baseline"]
    assert "| 0.000 (owl, night) |" in rows["student"] and "| 0.000 (owl, night) |" in rows["onnx"]


def test_changed_classes_sentence_gives_both_counts():
    md = render_markdown(_card())
    # fox -0.15 (p tiny) and owl -0.5 are changed; cat -0.0075 (3 discordant: p 0.25) is not
    assert (
        "- teacher -> student: **2 of 4 classes changed significantly by at least 0.02** in "
        "recall (McNemar exact, Benjamini-Hochberg, alpha 0.05): fox, owl; 2 of 4 significant "
        "at any size"
    ) in md
    assert (
        "  - within one background group (teacher -> student, corrected over every class and "
        "group, by at least 0.02): day: fox; night: fox, owl" in md
    )
    assert "| cat | -0.007 | 0.333 |" in md and "**changed**" in md


def test_protected_attribute_is_named_not_group():
    md = render_markdown(_card())
    assert "Protected attribute: **background** (groups: day, night)" in md
    assert "## Per-class recall by background (distilled student)" in md
    assert "for one protected attribute, background," in md


def test_no_negative_zero_in_md_or_html():
    card = _card()
    student = card["models"]["student"]["metrics"]
    student["per_class"][0]["disparity"] = -1e-5  # a gap that rounds to zero
    card["comparisons"]["teacher_to_student"]["per_class"][1]["recall_change"] = -4e-4
    card["comparisons"]["teacher_to_student"]["top1_change"] = -1e-9
    card["gates"][0]["value"] = -2e-5
    card["distillation"]["learned"] = {"temperature": -0.0}
    md, page = render_markdown(card), render_html(card)
    for text in (md, page):
        assert not NEGATIVE_ZERO.search(text), NEGATIVE_ZERO.search(text).group(0)
    assert "| cat | 0.000 |" in md and "learned temperature: 0" in md


def test_local_paths_leave_the_data_description():
    card = _card()
    text = json.dumps(card) + render_markdown(card) + render_html(card)
    assert "/home/ana" not in text and "private" not in text
    assert card["data"]["root"] == "shop"
    assert card["data"]["summary"] == "Images from shop listed in train.csv"
    assert card["data"]["skipped_bad_image_examples"] == [
        "shop/val.csv line 3: img/x.png: cannot identify image file"
    ]
    assert card["provenance"]["data"] == "Images from shop listed in train.csv"
    fashion = public_description(
        {"source": "fashion_mnist_colored", "path": "/usr/share/datasets/fm", "summary": "Fashion-MNIST"}
    )
    assert fashion == {"source": "fashion_mnist_colored", "path": "fm", "summary": "Fashion-MNIST"}
    assert public_description({"source": "csv", "root": "/"})["root"] == "csv"


def test_an_old_card_still_loads_and_renders():
    card = load_card(FIXTURES / "tiny_card_v0.2.0.json")
    md = render_markdown(card)
    render_html(card)
    assert not NEGATIVE_ZERO.search(md)
    assert (
        "classes significantly changed** (McNemar exact, Benjamini-Hochberg, alpha 0.05; "
        "no effect-size threshold on this card)" in md
    )
    assert "license: unknown" in md.split("---")[1]


# -------------------------------------------------------------------------- a csv-folder build
def test_a_csv_build_names_its_group_column_and_keeps_no_local_path(tmp_path):
    from edgekd.pipeline import build

    root = tmp_path / "private-folder" / "shop"
    rows = []
    for i in range(8):
        label, background = ("cat", "dog")[i % 2], ("dark", "light")[i // 2 % 2]
        Image.new("RGB", (12, 12), (30 * i, 200 - 20 * i, 90)).save(_mkdir(root / "img") / f"{i}.png")
        rows.append(f"img/{i}.png,{label},{background}")
    (root / "img" / "bad.png").write_bytes(b"not a png")
    header = "file,animal,background"
    for split in ("train", "test"):
        (root / f"{split}.csv").write_text("\n".join([header, *rows]) + "\n")
    (root / "val.csv").write_text("\n".join([header, *rows[:4], "img/bad.png,cat,dark"]) + "\n")
    recipe = tmp_path / "shop.yaml"
    recipe.write_text(f"""
name: shop
threads: 1
data: {{source: csv, root: private-folder/shop, image_size: 16, path_column: file,
        label_column: animal, group_column: background, max_bad_fraction: 1,
        cache_dir: {tmp_path / "cache"}}}
teacher: {{arch: test_efficientnet, epochs: 1, batch_size: 4}}
student: {{arch: test_efficientnet, epochs: 1, batch_size: 4}}
export: {{onnx: {{exporter: torchscript, opset: 17}}}}
card: {{bootstrap_resamples: 20, min_support: 1}}
""")
    result = build(recipe, out=tmp_path / "runs", log=lambda m: None)
    bundle = result.bundle_dir
    card = json.loads((bundle / "card.json").read_text())
    assert card["data"]["protected_attribute"] == "background"
    assert json.loads((bundle / "preprocess.json").read_text())["protected_attribute"] == "background"
    assert card["data"]["skipped_bad_images"]["val"] == 1
    md = (bundle / "card.md").read_text()
    assert "Protected attribute: **background** (groups: dark, light)" in md
    for name in ("card.json", "card.md", "card.html"):
        text = (bundle / name).read_text()
        assert str(tmp_path) not in text and "private-folder" not in text, name
        assert not NEGATIVE_ZERO.search(text) or name == "card.json", name
    assert "Images from shop listed in train.csv" in md


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
