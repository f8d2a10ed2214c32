"""Fairness card v1: class-wise significance, bootstrap intervals, gates, plots and html."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import stats

from edgekd.card.gates import evaluate_gates
from edgekd.cli import main
from edgekd.fairness.bootstrap import bootstrap_intervals, headline_from_counts
from edgekd.fairness.metrics import evaluate_predictions
from edgekd.fairness.significance import (
    benjamini_hochberg,
    classwise_mcnemar,
    mcnemar_exact,
    welch_classwise,
)


# ------------------------------------------------------------------------------ significance
def test_mcnemar_exact_hand_worked():
    # b = 1, c = 9: p = 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * (1 + 10) / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 12) == pytest.approx(stats.binomtest(3, 15, 0.5).pvalue)


def test_benjamini_hochberg_hand_worked():
    # sorted 0.01, 0.03, 0.04, 0.2 -> p * m / rank = 0.04, 0.06, 0.0533, 0.2 -> running min from
    # the top: 0.04, 0.0533, 0.0533, 0.2
    adjusted, rejected = benjamini_hochberg([0.01, 0.04, 0.03, 0.2], alpha=0.05)
    np.testing.assert_allclose(adjusted, [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert rejected.tolist() == [True, False, False, False]


def test_share_of_classes_changed_is_exactly_k_of_n():
    rng = np.random.default_rng(0)
    n_classes, per_class, changed = 5, 30, (1, 3)
    y = np.repeat(np.arange(n_classes), per_class)
    groups = np.tile([0, 1], len(y) // 2)
    before = np.where(rng.random(len(y)) < 0.8, y, (y + 1) % n_classes)
    after = before.copy()
    for c in changed:  # the "after" model loses every image of these classes
        after[y == c] = (c + 1) % n_classes
        before[y == c] = c
    result = classwise_mcnemar(y, before, after, groups, class_names=list("abcde"),
                               group_names=["g0", "g1"], alpha=0.05)
    assert result["significant_classes"] == ["b", "d"]
    assert result["share_significant"] == pytest.approx(2 / 5)
    row = result["per_class"][1]
    assert (row["a_right_b_wrong"], row["a_wrong_b_right"]) == (30, 0)
    assert row["by_group"]["g0"]["a_right_b_wrong"] == 15 and row["by_group"]["g0"]["significant"]


def test_welch_classwise_on_seeds():
    top1 = np.array([0.8, 0.8, 0.8])
    recall_a = np.array([[0.80, 0.60], [0.82, 0.61], [0.79, 0.59]])
    recall_b = np.array([[0.50, 0.60], [0.52, 0.62], [0.49, 0.58]])  # class 0 drops
    result = welch_classwise(recall_a, top1, recall_b, top1, class_names=["x", "y"])
    expected = stats.ttest_ind(recall_a[:, 0] / 0.8, recall_b[:, 0] / 0.8, equal_var=False).pvalue
    assert result["per_class"][0]["p"] == pytest.approx(expected)
    assert result["significant_classes"] == ["x"] and result["share_significant"] == 0.5


# --------------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("num_groups", [2, 3])
def test_vectorised_metrics_equal_the_fairlearn_ones(num_groups):
    rng = np.random.default_rng(num_groups)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    groups = rng.integers(0, num_groups, 300)
    names = [f"g{i}" for i in range(num_groups)]
    reference = evaluate_predictions(y, pred, groups, class_names=list("abcd"), group_names=names)
    fast = headline_from_counts(y, pred, groups, num_classes=4, num_groups=num_groups)
    assert fast["top1"] == pytest.approx(reference["top1"])
    assert fast["mean_abs_disparity"] == pytest.approx(reference["mean_abs_disparity"])
    assert fast["dpd"] == pytest.approx(reference["dpd"]["mean"])
    assert fast["eod"] == pytest.approx(reference["eod"]["mean"])


def test_three_groups_hand_worked():
    # class 0: recalls 1.0 (g0), 0.5 (g1), 0.0 (g2) -> disparity max - min = 1.0
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 1, 1, 1])
    groups = np.array([0, 1, 1, 2, 0, 1, 2])
    m = evaluate_predictions(y, pred, groups, class_names=["a", "b"], group_names=["x", "y", "z"])
    assert m["per_class"][0]["disparity"] == pytest.approx(1.0)
    # P(pred = 0 | g): g0 1/2, g1 1/3, g2 0 -> DPD(0) = 1/2
    assert m["per_class"][0]["dpd"] == pytest.approx(0.5)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.7, y, rng.integers(0, 3, 400))
    groups = rng.integers(0, 2, 400)
    first = bootstrap_intervals(y, pred, groups, num_classes=3, num_groups=2, resamples=200, seed=7)
    again = bootstrap_intervals(y, pred, groups, num_classes=3, num_groups=2, resamples=200, seed=7)
    assert first == again
    point = headline_from_counts(y, pred, groups, num_classes=3, num_groups=2)
    for key in ("top1", "mean_abs_disparity", "dpd", "eod"):
        assert first[key]["low"] <= point[key] <= first[key]["high"]
    assert first["top1"]["high"] - first["top1"]["low"] < 0.15


# ------------------------------------------------------------------------------------- gates
def _card(student_top1=0.8, onnx_agreement=0.99):
    def entry(kind, top1, disp):
        return {"kind": kind, "metrics": {"top1": top1, "mean_abs_disparity": disp,
                                          "dpd": {"mean": 0.1}, "eod": {"mean": 0.2}}}
    onnx = entry("onnx", student_top1 - 0.01, 0.30)
    onnx["vs_student"] = {"prediction_agreement": onnx_agreement, "top1_change": -0.01}
    return {"models": {"teacher": entry("torch", 0.9, 0.10), "baseline": entry("torch", 0.7, 0.2),
                       "student": entry("torch", student_top1, 0.25), "onnx": onnx}}


def test_gates_pass_and_fail_per_shipped_artifact():
    gates = evaluate_gates(_card(), {"min_top1": 0.75, "max_disparity_increase_vs_teacher": 0.18,
                                     "min_agreement_vs_student": 0.995, "max_dpd": None})
    by = {(g["name"], g["artifact"]): g for g in gates}
    assert set(by) == {("min_top1", "student"), ("min_top1", "onnx"),
                       ("max_disparity_increase_vs_teacher", "student"),
                       ("max_disparity_increase_vs_teacher", "onnx"),
                       ("min_agreement_vs_student", "onnx")}  # teacher/baseline are not shipped
    assert by[("min_top1", "student")]["passed"] and by[("min_top1", "onnx")]["passed"]
    assert by[("max_disparity_increase_vs_teacher", "student")]["value"] == pytest.approx(0.15)
    assert by[("max_disparity_increase_vs_teacher", "student")]["passed"]
    assert not by[("max_disparity_increase_vs_teacher", "onnx")]["passed"]  # 0.20 > 0.18
    assert not by[("min_agreement_vs_student", "onnx")]["passed"]


def test_build_and_card_check_exit_1_and_name_the_failed_gate(tiny_recipe, tmp_path):
    runner = CliRunner()
    built = runner.invoke(main, ["build", str(tiny_recipe), "--out", str(tmp_path),
                                 "--set", "card.gates.min_top1=0.99",
                                 "--set", "card.gates.max_eod=1.0"])
    assert built.exit_code == 1
    assert "gate failed: min_top1 on student: top-1 accuracy is" in built.output
    assert "needs >= 0.99" in built.output
    assert "max_eod" not in built.output  # that gate passes
    bundle = tmp_path / "tiny" / "bundle"
    check = runner.invoke(main, ["card", str(bundle), "--check"])
    assert check.exit_code == 1
    failed = [line for line in check.output.splitlines() if line.startswith("gate failed")]
    assert {line.split(" on ")[1].split(":")[0] for line in failed} == {"student", "onnx"}

    passing = runner.invoke(main, ["build", str(tiny_recipe), "--out", str(tmp_path),
                                   "--set", "card.gates.min_top1=0.0"])
    assert passing.exit_code == 0, passing.output
    assert runner.invoke(main, ["card", str(bundle), "--check"]).exit_code == 0


def test_bad_gate_config_is_named():
    from edgekd.errors import EdgeKDError
    from edgekd.recipe import parse_recipe

    with pytest.raises(EdgeKDError, match="card.gates.min_top1 = 1.5"):
        parse_recipe({"name": "x", "card": {"gates": {"min_top1": 1.5}}})
    with pytest.raises(EdgeKDError, match="card.gates.max_top1: unknown key"):
        parse_recipe({"name": "x", "card": {"gates": {"max_top1": 0.5}}})


# ---------------------------------------------------------------------- card files on a build
def test_card_has_significance_intervals_plots_and_html(tiny_build, tmp_path):
    card = tiny_build.card
    for key in ("teacher_to_student", "baseline_to_student"):
        test = card["significance"][key]
        assert len(test["per_class"]) == len(card["task"]["classes"])
        assert 0.0 <= test["share_significant"] <= 1.0
    for entry in card["models"].values():
        ci = entry["ci"]
        assert ci["resamples"] == 1000 and ci["level"] == 0.95
        assert ci["top1"]["low"] <= entry["metrics"]["top1"] <= ci["top1"]["high"]
    bundle = tiny_build.bundle_dir
    for plot in card["plots"]:
        with Image.open(bundle / plot) as image:
            assert image.format == "PNG" and image.size[0] > 200
    page = (bundle / "card.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page and "src=\"http" not in page
    md = (bundle / "card.md").read_text()
    assert "confidence intervals" in md and "significantly changed" in md and "base_model:" in md

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    result = CliRunner().invoke(main, ["card", str(copy), "--format", "html,json"])
    assert result.exit_code == 0 and "<!doctype html>" in result.output
    assert json.loads(result.output[result.output.index("\n{") + 1:])["schema"] == "edgekd.card/v1"
    bad = CliRunner().invoke(main, ["card", str(copy), "--format", "pdf"])
    assert bad.exit_code == 2 and "choose from: md, json, html" in bad.output
