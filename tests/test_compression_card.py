"""The card's "Compression by group" section, the bundle's predictions.npz and the flipped images.

The tiny build (one shared build, tests/conftest.py) gives the real section and files; its
model.onnx agrees with the student everywhere, so the flipped-image grid is checked on the same
build's predictions with one deliberately damaged artifact: one cell's correct predictions
broken, a few other images changed.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from edgekd.bundle.eval_set import read_eval_set
from edgekd.bundle.predictions import read_predictions, write_predictions
from edgekd.card.build import compression_by_group
from edgekd.card.compression import step_entry
from edgekd.card.flipped import GUTTER, draw_flipped_grid, flipped_examples, thumbnail
from edgekd.card.html import render_html
from edgekd.card.io import load_card
from edgekd.card.markdown import render_markdown
from edgekd.card.plots import write_plots
from edgekd.card.schema import check_card
from edgekd.errors import EdgeKDError


def _bundle(tiny_build):
    bundle = tiny_build.bundle_dir
    return bundle, load_card(bundle), read_predictions(bundle)


def test_tiny_card_has_both_training_steps_and_one_per_artifact(tiny_build):
    bundle, card, arrays = _bundle(tiny_build)  # load_card checks the card against its schema
    section = card["compression_by_group"]
    artifacts = [name for name, entry in card["models"].items() if entry.get("vs_student")]
    assert artifacts == ["onnx"]
    assert [s["step"] for s in section["steps"]] == (
        ["teacher -> student", "baseline -> student"] + [f"student -> {a}" for a in artifacts]
    )
    assert {s["measured_on"] for s in section["steps"]} == {"build"}
    assert (section["alpha"], section["min_effect"], section["min_support"]) == (0.05, 0.02, 10)
    names = dict(class_names=card["task"]["classes"], group_names=card["data"]["groups"])
    for step in section["steps"]:  # every number is the step recomputed from the shipped predictions
        again = step_entry(
            step["before"],
            step["after"],
            arrays["y_true"],
            arrays[f"pred_{step['before']}"],
            arrays[f"pred_{step['after']}"],
            arrays["groups"],
            **names,
            alpha=0.05,
            min_effect=0.02,
            min_support=10,
            measured_on="build",
        )
        assert {k: v for k, v in step.items() if k != "examples"} == json.loads(json.dumps(again))
        assert sum(r["images"] for r in step["per_cell"]) == len(arrays["y_true"])
    teacher = section["steps"][0]
    flips = int((arrays["pred_teacher"] != arrays["pred_student"]).sum())
    assert teacher["changed_images"] == flips and teacher["overall"]["agreement"] == pytest.approx(
        1 - flips / len(arrays["y_true"])
    )
    onnx = section["steps"][-1]
    assert onnx["examples"]["cells"] == [] and onnx["examples"]["plot"] is None  # onnx changed nothing
    assert section["plot"] in card["plots"] and (bundle / section["plot"]).is_file()
    check_card(card)


def test_predictions_npz_holds_every_model_and_the_changed_images(tiny_build):
    bundle, card, arrays = _bundle(tiny_build)
    artifacts = [name for name, entry in card["models"].items() if entry.get("vs_student")]
    assert set(arrays) == (
        {"y_true", "groups"} | {f"pred_{m}" for m in card["models"]} | {f"changed_{a}" for a in artifacts}
    )
    eval_set = read_eval_set(bundle)
    assert np.array_equal(arrays["y_true"], eval_set.labels)
    assert np.array_equal(arrays["groups"], eval_set.groups)
    for name, entry in card["models"].items():  # the predictions the card's metrics were measured on
        assert np.mean(arrays[f"pred_{name}"] == arrays["y_true"]) == pytest.approx(entry["metrics"]["top1"])
    for name in artifacts:
        assert np.array_equal(
            arrays[f"changed_{name}"], np.flatnonzero(arrays["pred_student"] != arrays[f"pred_{name}"])
        )
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "predictions.npz" in manifest["files"]
    with np.load(bundle / "predictions.npz", allow_pickle=False) as stored:
        assert all(stored[key].dtype == np.int64 for key in stored.files)


def test_a_broken_predictions_file_is_one_line(tmp_path):
    path = write_predictions(
        tmp_path / "predictions.npz",
        y_true=[0, 1, 1],
        groups=[0, 0, 1],
        predictions={"student": [0, 1, 0], "onnx": [0, 0, 0]},
        artifacts=["onnx"],
    )
    assert read_predictions(path)["changed_onnx"].tolist() == [1]
    np.savez(path, y_true=np.array([0, 1]), groups=np.array([0, 1]), pred_student=np.array([0]))
    with pytest.raises(EdgeKDError, match=r"pred_student must be one integer per test image"):
        read_predictions(path)
    np.savez(path, y_true=np.array([0, 1]), groups=np.array([0, 1]))
    with pytest.raises(EdgeKDError, match=r"lacks pred_student"):
        read_predictions(path)
    np.savez(
        path,
        y_true=np.array([0, 1]),
        groups=np.array([0, 1]),
        pred_student=np.array([0, 1]),
        changed_onnx=np.array([2]),
    )
    with pytest.raises(EdgeKDError, match=r"changed_onnx holds indices outside the 2 test images"):
        read_predictions(path)


@pytest.fixture(scope="module")
def damaged(tiny_build, tmp_path_factory):
    """The tiny build's card with one more artifact, ``damaged``: the student's predictions with
    every correct one of the best-recognised (class, group) cell broken and three other images
    changed; its section, plots and pages rendered the way the bundle's are."""
    bundle, card, arrays = _bundle(tiny_build)
    images = read_eval_set(bundle).images
    y, groups, student = arrays["y_true"], arrays["groups"], arrays["pred_student"]
    classes, group_names = card["task"]["classes"], card["data"]["groups"]
    right = [
        (int(((y == c) & (groups == g) & (student == y)).sum()), c, g)
        for c in range(len(classes))
        for g in range(len(group_names))
    ]
    count, c, g = max(right)
    assert count >= 8  # enough broken predictions for McNemar to name the cell
    after = student.copy()
    broken = np.flatnonzero((y == c) & (groups == g) & (student == y))
    after[broken] = (y[broken] + 1) % len(classes)
    others = np.flatnonzero(y != c)[:3]
    after[others] = (student[others] + 1) % len(classes)
    models = {
        name: SimpleNamespace(predictions=arrays[f"pred_{name}"], vs_student=entry.get("vs_student"))
        for name, entry in card["models"].items()
    }
    models["damaged"] = SimpleNamespace(predictions=after, vs_student={"prediction_agreement": 0.0})
    data = SimpleNamespace(
        test=SimpleNamespace(labels=y, groups=groups, images=images),
        class_names=classes,
        group_names=group_names,
    )
    card = json.loads(json.dumps(card))
    card["compression_by_group"] = compression_by_group(
        data, models, alpha=0.05, min_effect=0.02, min_support=10
    )
    step = card["compression_by_group"]["steps"][-1]
    card["plots"] = [
        *(p for p in card["plots"] if not p.startswith("plots/flipped_")),
        step["examples"]["plot"],
    ]
    out = tmp_path_factory.mktemp("damaged")
    plots = write_plots(card, out / "plots", images=images)
    check_card(card)
    return SimpleNamespace(
        card=card,
        step=step,
        images=images,
        after=after,
        arrays=arrays,
        broken=broken,
        cell=f"{classes[c]} / {group_names[g]}",
        plots=plots,
        html=render_html(card, plots),
        md=render_markdown(card),
    )


def test_the_damaged_cell_is_changed_and_named_first(damaged):
    step = damaged.step
    assert step["step"] == "student -> damaged"
    assert step["changed_cells"] == [damaged.cell]
    assert step["changed_images"] == len(damaged.broken) + 3
    first = step["examples"]["cells"][0]
    assert f"{first['class']} / {first['group']}" == damaged.cell
    assert first["changed"] == len(damaged.broken) and first["indices"] == damaged.broken[:4].tolist()


def test_card_md_and_html_put_the_changed_cell_first(damaged):
    md = damaged.md[damaged.md.index("### student -\\> damaged") :]
    md = md[: md.index("\n## ")]
    rows = [line for line in md.splitlines() if line.startswith("| ") and " / " in line.split("|")[1]]
    assert rows[0].startswith(f"| {damaged.cell} |") and rows[0].endswith("**changed** |")
    assert "<details>" not in damaged.md and re.search(r"And \d+ more cells?,? ", md)
    assert "![images damaged changed](plots/flipped_damaged.png)" in md
    html = damaged.html[damaged.html.index("<h3>student -&gt; damaged</h3>") :]
    html = html[: html.index("<h2>")]
    first_row = re.search(r"<th>cell</th>.*?</tr><tr><td>([^<]*)</td>", html).group(1)
    assert first_row == damaged.cell
    assert "<details>\n<summary>" in html and "</details>" in html  # the rest is folded, not dropped
    rows = re.findall(r"<tr><td>[^<]* / [^<]*</td><td>\d+</td><td>[0-9.]+</td>", html)
    assert len(rows) == len(damaged.step["per_cell"])  # every cell: the top ones, then the folded rest


def _inlined(html: str, alt: str) -> np.ndarray:
    src = re.search(rf'<img alt="{re.escape(alt)}" src="data:image/png;base64,([^"]+)">', html).group(1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src))).convert("RGB"))


def test_thumbnails_in_card_html_are_the_images_the_indices_name(damaged):
    grid = _inlined(damaged.html, "images damaged changed")
    cells = damaged.step["examples"]["cells"]
    arrays, images = damaged.arrays, damaged.images
    tile = images.shape[1]  # 32 px test images are drawn as they are
    assert grid.shape[0] == GUTTER + len(cells) * (tile + GUTTER)
    for r, cell in enumerate(cells):
        for k, index in enumerate(cell["indices"]):
            y, x = GUTTER + r * (tile + GUTTER), GUTTER + k * (tile + GUTTER)
            assert np.array_equal(grid[y : y + tile, x : x + tile], images[index]), (r, k, index)
            assert arrays["pred_student"][index] != damaged.after[index]
            assert arrays["y_true"][index] == damaged.card["task"]["classes"].index(cell["class"])
            assert arrays["groups"][index] == damaged.card["data"]["groups"].index(cell["group"])
        assert (grid[GUTTER + r * (tile + GUTTER) - GUTTER : GUTTER + r * (tile + GUTTER)] == 255).all()
    listed = re.findall(
        r"<tr><td>(\d+)</td><td>([^<]+)</td><td>(\d+)</td><td>([\d, ]+)</td></tr>", damaged.html
    )
    assert [(int(row), cell, [int(i) for i in indices.split(", ")]) for row, cell, _, indices in listed] == [
        (r + 1, f"{c['class']} / {c['group']}", c["indices"]) for r, c in enumerate(cells)
    ]


def test_large_images_are_drawn_as_their_thumbnails(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 96, 80, 3), dtype=np.uint8)
    y, groups = np.array([0, 0, 1, 1, 0, 1]), np.array([0, 1, 0, 1, 0, 1])
    before, after = y.copy(), np.array([1, 0, 0, 1, 1, 0])
    rows = step_entry(
        "student",
        "x",
        y,
        before,
        after,
        groups,
        class_names=["a", "b"],
        group_names=["p", "q"],
        alpha=0.05,
        min_effect=0.02,
        min_support=1,
        measured_on="build",
    )["per_cell"]
    cells = flipped_examples(y, before, after, groups, rows, class_names=["a", "b"], group_names=["p", "q"])
    assert sorted((c["class"], c["group"], c["indices"]) for c in cells) == [
        ("a", "p", [0, 4]),
        ("b", "p", [2]),
        ("b", "q", [5]),
    ]
    grid = np.asarray(Image.open(draw_flipped_grid(images, cells, tmp_path / "grid.png")).convert("RGB"))
    assert grid.shape == (GUTTER + 3 * 66, GUTTER + 2 * 66, 3)
    for r, cell in enumerate(cells):
        for k, index in enumerate(cell["indices"]):
            small = thumbnail(images[index])
            assert small.shape == (64, 53, 3)
            y0, x0 = GUTTER + r * 66, GUTTER + k * 66
            assert np.array_equal(grid[y0 : y0 + 64, x0 : x0 + 53], small)
            assert (grid[y0 : y0 + 64, x0 + 53 : x0 + 64] == 255).all()  # the tile's unused width


def test_a_build_without_images_says_so(damaged):
    arrays, card = damaged.arrays, damaged.card
    data = SimpleNamespace(
        test=SimpleNamespace(labels=arrays["y_true"], groups=arrays["groups"]),
        class_names=card["task"]["classes"],
        group_names=card["data"]["groups"],
    )
    models = {
        "student": SimpleNamespace(predictions=damaged.arrays["pred_student"], vs_student=None),
        "damaged": SimpleNamespace(predictions=damaged.after, vs_student={}),
    }
    section = compression_by_group(
        data, models, alpha=0.05, min_effect=0.02, min_support=10, images_at_hand=False
    )
    assert [s["step"] for s in section["steps"]] == ["student -> damaged"]
    examples = section["steps"][0]["examples"]
    assert examples["plot"] is None and examples["cells"]
    card = {**damaged.card, "compression_by_group": section}
    md = render_markdown(card)
    assert md.count("No thumbnails: no test images at hand to draw from at build time.") == 1


def test_the_results_script_reads_the_section_back_from_the_predictions(tiny_build):
    import importlib.util

    from edgekd.card.compression import SECTION

    path = Path(__file__).parents[1] / "benchmarks" / "bench_compression_by_group.py"
    spec = importlib.util.spec_from_file_location("bench_compression_by_group", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    card, rows = script.rows_of(tiny_build.bundle_dir)
    steps = card[SECTION]["steps"]
    assert [r["step"] for r in rows] == [s["step"] for s in steps]
    for row, step in zip(rows, steps):
        assert (row["agreement"], row["right_to_wrong"], row["changed_images"]) == (
            step["overall"]["agreement"],
            step["overall"]["right_to_wrong"],
            step["changed_images"],
        )
        assert row["worst_cell"] == f"{step['worst_cell']['class']} / {step['worst_cell']['group']}"
