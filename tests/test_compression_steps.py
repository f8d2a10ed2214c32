"""The card's compression steps: one entry per step (build and device alike), filed in chain order."""

import json

import numpy as np
import pytest

from edgekd.card.compression import put_step, step_entry
from edgekd.fairness.compression import compression_effect

CLASSES, GROUPS = ["a", "b", "c"], ["warm", "cool"]
# the hand-worked example of tests/test_compression_effect.py
Y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2])
G = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0])
BEFORE = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 2, 2])
AFTER = np.array([0, 1, 2, 1, 0, 0, 0, 1, 1, 1, 2, 0])
SETTINGS = dict(alpha=0.05, min_effect=0.02, min_support=2)


def entry(after_name="onnx_int8", measured_on="build", after=AFTER):
    return step_entry(
        "student",
        after_name,
        Y,
        BEFORE,
        after,
        G,
        class_names=CLASSES,
        group_names=GROUPS,
        measured_on=measured_on,
        **SETTINGS,
    )


def test_step_entry_is_the_effect_named_without_its_settings():
    step = entry()
    assert (step["step"], step["before"], step["after"], step["measured_on"]) == (
        "student -> onnx_int8",
        "student",
        "onnx_int8",
        "build",
    )
    effect = compression_effect(Y, BEFORE, AFTER, G, class_names=CLASSES, group_names=GROUPS, **SETTINGS)
    assert not {"alpha", "min_effect", "min_support"} & set(step)
    assert {k: v for k, v in step.items() if k not in ("step", "before", "after", "measured_on")} == {
        k: v for k, v in effect.items() if k not in ("alpha", "min_effect", "min_support")
    }
    # min_support 2 leaves out the one-image cell (c, warm): the worst is (a, warm) at 2 of 4
    assert step["worst_cell"] == {"class": "a", "group": "warm", "agreement": 0.5, "images": 4}
    assert step["changed_images"] == 4


def test_put_step_keeps_chain_order_and_replaces_the_same_step():
    card = {}
    put_step(card, entry("onnx"), **SETTINGS)
    put_step(card, entry("onnx_int8"), **SETTINGS)
    put_step(card, entry("fp16.engine", measured_on="orin"), **SETTINGS)
    section = card["compression_by_group"]
    assert (section["alpha"], section["min_effect"], section["min_support"]) == (0.05, 0.02, 2)
    assert [s["step"] for s in section["steps"]] == [
        "student -> onnx",
        "student -> onnx_int8",
        "student -> fp16.engine",
    ]
    # measured again on the same device: replaced in place; on another device: a new step
    put_step(card, entry("fp16.engine", measured_on="orin", after=BEFORE), **SETTINGS)
    put_step(card, entry("fp16.engine", measured_on="nano"), **SETTINGS)
    steps = section["steps"]
    assert [(s["after"], s["measured_on"]) for s in steps] == [
        ("onnx", "build"),
        ("onnx_int8", "build"),
        ("fp16.engine", "orin"),
        ("fp16.engine", "nano"),
    ]
    assert steps[2]["overall"]["agreement"] == 1.0
    assert steps[3]["overall"]["agreement"] == pytest.approx(8 / 12)


def test_mcnemar_and_benjamini_hochberg_without_scipy_equal_scipy(monkeypatch):
    """The device has no scipy: the exact sums in integers and numpy give scipy's numbers."""
    from edgekd.fairness import significance

    pairs = [(0, 0), (0, 1), (2, 0), (3, 3), (0, 6), (12, 0), (7, 19), (40, 61), (250, 310), (1, 900)]
    pvalues = np.array([0.5, 0.01, 0.2, 0.03, 1.0, 0.04, 0.001, 0.03, 0.9, 0.049])
    with_scipy = [significance.mcnemar_exact(b, c) for b, c in pairs]
    adjusted, rejected = significance.benjamini_hochberg(pvalues, alpha=0.05)
    monkeypatch.setattr(significance, "_stats", lambda: None)
    assert [significance.mcnemar_exact(b, c) for b, c in pairs] == pytest.approx(with_scipy, rel=1e-9)
    # by hand: b = 0, c = 6 -> 2 / 2^6; b = 2, c = 0 -> 2 * 1/4 = 0.5
    assert significance.mcnemar_exact(0, 6) == 2 / 64 and significance.mcnemar_exact(2, 0) == 0.5
    lean_adjusted, lean_rejected = significance.benjamini_hochberg(pvalues, alpha=0.05)
    assert lean_adjusted == pytest.approx(adjusted, rel=1e-12) and (lean_rejected == rejected).all()
    # by hand: the smallest p 0.001 * 10 / 1 = 0.01; the tied 0.03 -> min over ranks >= 4 of p*10/i
    assert lean_adjusted[6] == pytest.approx(0.01)
    assert lean_adjusted[3] == pytest.approx(min(0.03 * 10 / 4, 0.04 * 10 / 5, 0.049 * 10 / 6))


# ------------------------------------------------ the device path: bench --eval, edgekd engine
def _device_bundle(tmp_path):
    """test_bench_cli's hand-made bundle (model.onnx predicts the lit channel of 12 solid images)
    with a predictions.npz in the build's form: a stand-in student that differs from model.onnx
    on three images (2 and 8: right where model.onnx is wrong; 7: wrong where it is right)."""
    from test_bench_cli import GROUPS as BENCH_GROUPS
    from test_bench_cli import eval_images, minimal_card, tiny_onnx

    from edgekd.bundle import write_manifest
    from edgekd.bundle.eval_set import write_eval_set
    from edgekd.card.markdown import render_markdown
    from edgekd.fairness.metrics import evaluate_predictions

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    tiny_onnx(bundle / "model.onnx")
    images, labels, groups, lit = eval_images()
    write_eval_set(bundle, images, labels, groups)
    classes = ["red", "green", "blue"]
    (bundle / "preprocess.json").write_text(
        json.dumps(
            {
                "input_size": [3, 8, 8],
                "layout": "NCHW",
                "pixel_scale": 1 / 255,
                "mean": [0.5] * 3,
                "std": [0.25] * 3,
                "class_names": classes,
                "protected_attribute": "g",
                "protected_groups": BENCH_GROUPS,
            }
        )
    )
    student = lit.copy()
    student[[2, 8]] = 0
    student[7] = 2
    card = minimal_card(
        evaluate_predictions(labels, student, groups, class_names=classes, group_names=BENCH_GROUPS)
    )
    (bundle / "card.json").write_text(json.dumps(card))
    (bundle / "card.md").write_text(render_markdown(card))
    np.savez(
        bundle / "predictions.npz",
        y_true=labels,
        groups=groups,
        pred_student=student,
        pred_onnx=lit,
        changed_onnx=np.flatnonzero(student != lit),
    )
    write_manifest(bundle, name="tiny", version="0.1.0")
    return bundle, labels, groups, student, lit, classes, BENCH_GROUPS


def test_bench_eval_files_the_same_step_the_build_computes(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from compare import assert_close_tree

    from edgekd.bench.card_update import load_result
    from edgekd.bench.evaluate import evaluate_artifact
    from edgekd.bundle import manifest_problems
    from edgekd.card.io import load_card
    from edgekd.cli import main
    from edgekd.fairness import significance

    bundle, labels, groups, student, lit, classes, group_names = _device_bundle(tmp_path)
    build = step_entry(
        "student",
        "onnx",
        labels,
        student,
        lit,
        groups,
        class_names=classes,
        group_names=group_names,
        alpha=0.05,
        min_effect=0.02,
        min_support=1,
        measured_on="?",
    )  # with scipy, as the build
    monkeypatch.setattr(significance, "_stats", lambda: None)  # the device has no scipy
    out = tmp_path / "result.json"
    for _ in range(2):  # measured twice on this device: one step, replaced
        run = CliRunner().invoke(
            main,
            [
                "bench",
                str(bundle),
                "--batch-sizes",
                "4",
                "--iterations",
                "3",
                "--warmup",
                "1",
                "--threads",
                "1",
                "--eval",
                "--json",
                str(out),
                "--update-card",
            ],
        )
        assert run.exit_code == 0, run.output
    device = load_result(out)["device"]["id"]
    card = load_card(bundle)
    (step,) = card["compression_by_group"]["steps"]
    assert_close_tree(step, {**build, "measured_on": device})
    # by hand: (red, a) and (red, b) each lose one of 4 to model.onnx, (green, b) gains one of 2
    cells = {(r["class"], r["group"]): r for r in step["per_cell"]}
    assert (cells["red", "a"]["agreement"], cells["red", "a"]["right_to_wrong"]) == (0.75, 1)
    assert (cells["green", "b"]["agreement"], cells["green", "b"]["wrong_to_right"]) == (0.5, 1)
    assert step["worst_cell"] == {"class": "green", "group": "b", "agreement": 0.5, "images": 2}
    assert (step["overall"]["right_to_wrong"], step["overall"]["wrong_to_right"], step["overall"]["p"]) == (
        2,
        1,
        1.0,
    )  # McNemar exact: 2 * P(Binomial(3, 1/2) <= 1) = 1
    assert step["changed_images"] == 3 and step["step"] == "student -> onnx"
    section = card["compression_by_group"]
    assert (section["alpha"], section["min_effect"], section["min_support"]) == (0.05, 0.02, 1)
    # the bench entry keeps its evaluation without the step
    (entry,) = [
        r
        for by_backend in card["bench"].values()
        for by_file in by_backend.values()
        for r in by_file.values()
    ]
    assert "compression_step" not in entry["eval"] and entry["eval"]["top1"] == 0.75
    assert manifest_problems(bundle) == []
    # an evaluation against a reference (bench --all: model.onnx) names its worst cell too
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    scored = evaluate_artifact(None, bundle, preprocess, batch=4, reference=student, predictions=lit)
    assert scored["agreement"]["prediction_agreement"] == 0.75
    assert scored["agreement"]["worst_cell_agreement"] == {
        "class": "green",
        "group": "b",
        "agreement": 0.5,
        "images": 2,
    }


def test_an_engine_adds_its_step_beside_its_entry(tmp_path):
    from compare import assert_close_tree

    from edgekd.bench.card_update import add_engine
    from edgekd.bench.evaluate import student_step
    from edgekd.card.io import load_card

    bundle, labels, groups, student, lit, classes, group_names = _device_bundle(tmp_path)
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    engine_predictions = lit.copy()
    engine_predictions[0] = 1  # the engine also breaks image 0 (red, a)
    step = student_step(
        bundle,
        engine_predictions,
        after="tensorrt_fp16",
        measured_on="orin",
        card=load_card(bundle),
        preprocess=preprocess,
    )
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"stand-in serialized engine")
    entry = {
        "kind": "tensorrt",
        "precision": "fp16",
        "size_bytes": 26,
        "metrics": load_card(bundle)["models"]["student"]["metrics"],
    }
    add_engine(
        bundle,
        engine,
        name="tensorrt_fp16",
        entry=entry,
        info={"tensorrt": "10.3"},
        step=step,
        log=lambda line: None,
    )
    (filed,) = load_card(bundle)["compression_by_group"]["steps"]
    assert_close_tree(
        filed,
        step_entry(
            "student",
            "tensorrt_fp16",
            labels,
            student,
            engine_predictions,
            groups,
            class_names=classes,
            group_names=group_names,
            alpha=0.05,
            min_effect=0.02,
            min_support=1,
            measured_on="orin",
        ),
    )
    assert filed["changed_images"] == 4


def test_a_predictions_file_that_does_not_match_the_eval_set_is_one_line(tmp_path):
    from edgekd.bench.evaluate import student_step
    from edgekd.errors import EdgeKDError

    bundle, labels, groups, student, lit, *_ = _device_bundle(tmp_path)
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    np.savez(bundle / "predictions.npz", y_true=labels[::-1], groups=groups, pred_student=student)
    with pytest.raises(EdgeKDError, match=r"predictions.npz: its y_true and groups are not those of "):
        student_step(bundle, lit, after="onnx", measured_on="x", card=None, preprocess=preprocess)
    np.savez(bundle / "predictions.npz", y_true=labels, groups=groups)
    with pytest.raises(EdgeKDError, match=r"predictions.npz: lacks pred_student; it needs y_true, "):
        student_step(bundle, lit, after="onnx", measured_on="x", card=None, preprocess=preprocess)
    (bundle / "predictions.npz").unlink()  # a bundle from before: no step, no error
    assert student_step(bundle, lit, after="onnx", measured_on="x", card=None, preprocess=preprocess) is None


def test_step_settings_come_from_the_section_then_the_significance_test_then_the_defaults():
    from edgekd.card.compression import step_settings

    assert step_settings(None) == {"alpha": 0.05, "min_effect": 0.02, "min_support": 1}
    card = {
        "significance": {"teacher_to_student": {"alpha": 0.1, "min_effect": 0.05}},
        "data": {"min_support": 20},
    }
    assert step_settings(card) == {"alpha": 0.1, "min_effect": 0.05, "min_support": 20}
    card["compression_by_group"] = {"alpha": 0.01, "min_effect": 0.03, "min_support": 5, "steps": []}
    assert step_settings(card) == {"alpha": 0.01, "min_effect": 0.03, "min_support": 5}
