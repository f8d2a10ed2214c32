"""Fairness card v1: class-wise significance, bootstrap intervals, gates, plots and html."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image
from scipy import stats

from edgekd.bundle.manifest import write_manifest
from edgekd.card.build import build_card, seed_significance
from edgekd.card.evaluation import evaluate
from edgekd.card.gates import evaluate_gates
from edgekd.card.html import render_html
from edgekd.card.markdown import render_markdown
from edgekd.card.plots import write_plots
from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.fairness.bootstrap import bootstrap_intervals, headline_from_counts
from edgekd.fairness.metrics import evaluate_predictions
from edgekd.fairness.significance import (
    benjamini_hochberg,
    classwise_mcnemar,
    mcnemar_exact,
    welch_classwise,
)
from edgekd.recipe import parse_recipe


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
    result = classwise_mcnemar(
        y, before, after, groups, class_names=list("abcde"), group_names=["g0", "g1"], alpha=0.05
    )
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
        return {
            "kind": kind,
            "metrics": {"top1": top1, "mean_abs_disparity": disp, "dpd": {"mean": 0.1}, "eod": {"mean": 0.2}},
        }

    onnx = entry("onnx", student_top1 - 0.01, 0.30)
    onnx["vs_student"] = {"prediction_agreement": onnx_agreement, "top1_change": -0.01}
    return {
        "models": {
            "teacher": entry("torch", 0.9, 0.10),
            "baseline": entry("torch", 0.7, 0.2),
            "student": entry("torch", student_top1, 0.25),
            "onnx": onnx,
        }
    }


def test_gates_pass_and_fail_per_shipped_artifact():
    gates = evaluate_gates(
        _card(),
        {
            "min_top1": 0.75,
            "max_disparity_increase_vs_teacher": 0.18,
            "min_agreement_vs_student": 0.995,
            "max_dpd": None,
        },
    )
    by = {(g["name"], g["artifact"]): g for g in gates}
    assert set(by) == {
        ("min_top1", "student"),
        ("min_top1", "onnx"),
        ("max_disparity_increase_vs_teacher", "student"),
        ("max_disparity_increase_vs_teacher", "onnx"),
        ("min_agreement_vs_student", "onnx"),
    }  # teacher/baseline are not shipped
    assert by[("min_top1", "student")]["passed"] and by[("min_top1", "onnx")]["passed"]
    assert by[("max_disparity_increase_vs_teacher", "student")]["value"] == pytest.approx(0.15)
    assert by[("max_disparity_increase_vs_teacher", "student")]["passed"]
    assert not by[("max_disparity_increase_vs_teacher", "onnx")]["passed"]  # 0.20 > 0.18
    assert not by[("min_agreement_vs_student", "onnx")]["passed"]


def test_build_and_card_check_exit_1_and_name_the_failed_gate(tiny_recipe, tmp_path):
    runner = CliRunner()
    built = runner.invoke(
        main,
        [
            "build",
            str(tiny_recipe),
            "--out",
            str(tmp_path),
            "--set",
            "card.gates.min_top1=0.99",
            "--set",
            "card.gates.max_eod=1.0",
        ],
    )
    assert built.exit_code == 1
    assert "gate failed: min_top1 on student: top-1 accuracy is" in built.output
    assert "needs >= 0.99" in built.output
    assert "gate failed: max_eod" not in built.output  # that gate passes
    assert "  pass  max_eod on student = " in built.output  # and the summary lists it
    bundle = tmp_path / "tiny" / "bundle"
    check = runner.invoke(main, ["card", str(bundle), "--check"])
    assert check.exit_code == 1
    failed = [line for line in check.output.splitlines() if line.startswith("gate failed")]
    assert {line.split(" on ")[1].split(":")[0] for line in failed} == {"student", "onnx"}

    passing = runner.invoke(
        main, ["build", str(tiny_recipe), "--out", str(tmp_path), "--set", "card.gates.min_top1=0.0"]
    )
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
    assert page.count("data:image/png;base64,") == len(card["plots"]) == 4
    assert "<table>" in page and 'src="http' not in page
    md = (bundle / "card.md").read_text()
    assert "confidence intervals" in md and "significantly changed" in md
    # trained from scratch: no base model named (issue 16), and the card says so
    assert "base_model" not in md and "teacher from scratch; baseline from scratch" in md

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    result = CliRunner().invoke(main, ["card", str(copy), "--format", "html,json"])
    assert result.exit_code == 0 and "<!doctype html>" in result.output
    assert json.loads(result.output[result.output.index("\n{") + 1 :])["schema"] == "edgekd.card/v1"
    bad = CliRunner().invoke(main, ["card", str(copy), "--format", "pdf"])
    assert bad.exit_code == 2 and "choose from: md, json, html" in bad.output


# ------------------------------------------------- a realistic card without a build (no torch)
CLASSES = ["cat", "dog", "eel", "fox"]


class _Split(SimpleNamespace):
    def __len__(self):
        return len(self.labels)


def _constructed(groups_names=("a", "b"), *, gates=None, resamples=200, seed_metrics=None):
    """build_card on hand-made predictions: teacher good, baseline worse, student worse for group 1."""
    rng = np.random.default_rng(3)
    n = 400
    y = np.repeat(np.arange(4), n // 4)
    groups = np.tile(np.arange(len(groups_names)), n // len(groups_names) + 1)[:n]

    def noisy(p_right):
        return np.where(rng.random(n) < p_right, y, (y + 1) % 4)

    preds = {
        "teacher": noisy(0.9),
        "baseline": noisy(0.8),
        "student": np.where(groups == 1, noisy(0.5), noisy(0.85)),
    }
    onnx_pred = preds["student"].copy()
    onnx_pred[:4] = (onnx_pred[:4] + 1) % 4  # 4 of 400 flipped by the export: agreement 0.99
    recipe = parse_recipe(
        {
            "name": "made",
            "export": {"onnx": {"min_agreement": 0.9}},
            "card": {"bootstrap_resamples": resamples, "gates": gates or {}},
        }
    )
    data = SimpleNamespace(
        test=_Split(labels=y, groups=groups),
        train=[0] * 10,
        val=[0] * 5,
        num_classes=4,
        class_names=CLASSES,
        group_names=list(groups_names),
        protected_attribute="colour",
        description={"source": "handmade", "synthetic": True, "summary": "hand-made predictions"},
    )
    evaluations = {
        name: evaluate(name, pred, data, kind="torch", size_bytes=2_000_000, details={"arch": "net"})
        for name, pred in preds.items()
    }
    evaluations["onnx"] = evaluate(
        "onnx",
        onnx_pred,
        data,
        kind="onnx",
        size_bytes=2_000_000,
        file="model.onnx",
        precision="fp32",
        details={"arch": "net", "export": {"argmax_agreement": 0.99}},
        reference=evaluations["student"],
    )
    return build_card(recipe, data, evaluations, seed_metrics=seed_metrics, seeds=[0, 1, 2])


def _bundle(tmp_path, card):
    bundle = tmp_path / "bundle"
    bundle.mkdir(parents=True)
    plots = write_plots(card, bundle / "plots")
    card["plots"] = [p.relative_to(bundle).as_posix() for p in plots]
    (bundle / "card.json").write_text(json.dumps(card))
    (bundle / "card.md").write_text(render_markdown(card))
    (bundle / "card.html").write_text(render_html(card, plots))
    write_manifest(bundle, name="made", version="0.1.0")
    return bundle


def test_card_check_on_a_constructed_bundle_exit_codes_and_messages(tmp_path):
    card = _constructed(gates={"min_top1": 0.8, "max_eod": 1.0, "min_agreement_vs_student": 0.995})
    bundle = _bundle(tmp_path, card)
    result = CliRunner().invoke(main, ["card", str(bundle), "--check"])
    assert result.exit_code == 1
    student_top1 = card["models"]["student"]["metrics"]["top1"]
    assert student_top1 < 0.8
    assert (
        f"gate failed: min_top1 on student: top-1 accuracy is {student_top1:.4f}, needs >= 0.8"
        in result.output
    )
    assert (
        "gate failed: min_agreement_vs_student on onnx: prediction agreement with the torch "
        "student is 0.9900, needs >= 0.995"
    ) in result.output
    assert "max_eod" not in result.output and "on teacher" not in result.output

    card["gates"] = [g for g in card["gates"] if g["passed"]]
    passing = _bundle(tmp_path / "ok", card)
    ok = CliRunner().invoke(main, ["card", str(passing), "--check"])
    assert ok.exit_code == 0 and "all gates pass, all checksums match" in ok.output
    md = passing / "card.md"
    md.write_text(md.read_text().replace("# made 0.1.0", "# MADE 0.1.0"))  # same size, other bytes
    tampered = CliRunner().invoke(main, ["card", str(passing), "--check"])
    assert tampered.exit_code == 1 and "checksum mismatch: card.md" in tampered.output


def test_evaluate_gates_rejects_unknown_names_and_fails_undefined_values():
    card = _card()
    card["models"]["student"]["metrics"]["mean_abs_disparity"] = None
    with pytest.raises(EdgeKDError, match="card.gates.max_top5: unknown gate; allowed: min_top1"):
        evaluate_gates(card, {"max_top5": 0.1})
    gate = [g for g in evaluate_gates(card, {"max_mean_abs_disparity": 0.9}) if g["artifact"] == "student"][0]
    assert gate["value"] is None and not gate["passed"]


def test_constructed_card_keys_significance_and_gates():
    card = _constructed(gates={"max_disparity_increase_vs_teacher": 0.05})
    # the worst-place gates are on by default, on the exported artifact only
    assert [g["name"] for g in card["gates"]] == [
        "onnx_matches_torch",
        "max_disparity_increase_vs_teacher",
        "max_disparity_increase_vs_teacher",
        "min_cell_agreement_vs_student",
        "min_group_agreement_vs_student",
        "max_group_recall_drop_vs_student",
    ]
    by_artifact = {g["artifact"]: g for g in card["gates"][1:3]}
    teacher = card["models"]["teacher"]["metrics"]["mean_abs_disparity"]
    student = card["models"]["student"]["metrics"]["mean_abs_disparity"]
    assert by_artifact["student"]["value"] == pytest.approx(student - teacher)
    assert not by_artifact["student"]["passed"]  # the student serves group b much worse
    sig = card["significance"]["teacher_to_student"]
    assert sig["share_significant"] == len(sig["significant_classes"]) / 4
    assert card["models"]["onnx"]["vs_student"]["prediction_agreement"] == pytest.approx(0.99)
    assert _constructed(gates={"max_disparity_increase_vs_teacher": 0.05}) == card  # deterministic


def test_card_md_front_matter_sections_and_valid_html(tmp_path):
    card = _constructed()
    card["distillation"]["learned"] = {"alpha_by_class": {"cat": 0.5, "dog": 0.9}}
    card["debias"] = {
        "method": "adversarial",
        "lambda": 0.5,
        "criterion": "demographic_parity",
        "apply_to": ["student"],
        "epochs": {"student": [{"epoch": 3, "adversary_top1": 0.61, "adversary_reference": 0.5}]},
    }
    card["bench"] = {
        "jetson-orin": {
            "onnxruntime": {
                "model.onnx": {
                    "backend": "onnxruntime",
                    "device": {"id": "jetson-orin"},
                    "artifact": {"file": "model.onnx"},
                    "results": [
                        {
                            "batch": 1,
                            "latency_ms": {"p50": 4.25, "p90": 5.5},
                            "throughput_ips": 235.3,
                            "peak_rss_mb": 310.0,
                        }
                    ],
                }
            }
        }
    }
    bundle = _bundle(tmp_path, card)
    md = (bundle / "card.md").read_text()
    front = yaml.safe_load(md.split("---\n")[1])
    assert front["library_name"] == "onnx" and "datasets" not in front  # handmade: no Hub dataset
    [result] = front["model-index"][0]["results"]  # the shipped model only
    assert result["metrics"][0] == {
        "type": "accuracy",
        "name": "top-1 accuracy (model.onnx through onnx)",
        "value": round(card["models"]["onnx"]["metrics"]["top1"], 6),
    }
    for heading in (
        "## Model and intended use",
        "## Distillation",
        "## Data and protected attribute",
        "## Headline metrics",
        "## Per-class recall disparity, every model and artifact",
        "## Classes significantly changed by distillation",
        "## Release gates",
        "## Bench results",
        "## Plots",
        "## Limitations",
        "## Provenance",
    ):
        assert heading in md, heading
    ci = card["models"]["student"]["ci"]["top1"]
    assert f"[{ci['low']:.3f}, {ci['high']:.3f}]" in md
    assert "learned alpha_by_class: cat 0.5, dog 0.9" in md
    assert (
        "accuracy 0.610 after epoch 3, against 0.500 for an output that leaks nothing "
        "demographic_parity forbids (the largest group's share)"
    ) in md
    assert "| jetson-orin | onnxruntime | model.onnx | 1 | 4.25 | 5.5 |" in md
    assert "power W" not in md  # no power measured: no empty column
    assert "The data is synthetic" in md
    assert "![disparity by class](plots/disparity_by_class.png)" in md

    page = (bundle / "card.html").read_text()
    # every plot inlined: the three of the models and the compression-by-group heatmap
    assert card["plots"] == [
        "plots/disparity_by_class.png",
        "plots/recall_by_group.png",
        "plots/training_curves.png",
        "plots/compression_by_group.png",
    ]
    assert page.count('src="data:image/png;base64,') == len(card["plots"]) == 4
    assert 'src="plots/' not in page

    class Balanced(HTMLParser):
        void = {"meta", "img", "br", "hr", "link"}

        def __init__(self):
            super().__init__()
            self.stack, self.errors = [], []

        def handle_starttag(self, tag, attrs):
            if tag not in self.void:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            if not self.stack or self.stack.pop() != tag:
                self.errors.append(tag)

    parser = Balanced()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []
    assert "<td>jetson-orin</td>" in page and "<h2>Release gates</h2>" in page


def test_three_groups_card_plots_are_pngs_with_max_minus_min(tmp_path):
    card = _constructed(("x", "y", "z"), resamples=50)
    row = card["models"]["student"]["metrics"]["per_class"][0]
    recalls = list(row["recall_by_group"].values())
    assert row["disparity"] == pytest.approx(max(recalls) - min(recalls))
    md = render_markdown(card)
    assert "Disparity = max - min recall over the groups" in md
    for path in write_plots(card, tmp_path / "plots"):
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"


def test_multi_seed_welch_section():
    rng = np.random.default_rng(0)

    def seeds(p_right_by_class):
        out = []
        for _ in range(3):
            y = np.repeat(np.arange(4), 100)
            right = rng.random(400) < np.repeat(p_right_by_class, 100)
            pred = np.where(right, y, (y + 1) % 4)
            out.append(
                evaluate_predictions(
                    y, pred, np.tile([0, 1], 200), class_names=CLASSES, group_names=["a", "b"]
                )
            )
        return out

    # same overall accuracy, so recall/top-1 moves only where a class's recall moves: cat and dog
    metrics = {
        "teacher": seeds([0.9, 0.7, 0.9, 0.7]),
        "baseline": seeds([0.8, 0.8, 0.8, 0.8]),
        "student": seeds([0.7, 0.9, 0.9, 0.7]),
    }
    study = seed_significance(metrics, class_names=CLASSES, seeds=[0, 1, 2])
    assert study["teacher_to_student"]["significant_classes"] == ["cat", "dog"]
    recall_t = np.array([[r["recall"] for r in m["per_class"]] for m in metrics["teacher"]])
    recall_s = np.array([[r["recall"] for r in m["per_class"]] for m in metrics["student"]])
    top1_t = np.array([m["top1"] for m in metrics["teacher"]])
    top1_s = np.array([m["top1"] for m in metrics["student"]])
    expected = stats.ttest_ind(recall_t[:, 1] / top1_t, recall_s[:, 1] / top1_s, equal_var=False).pvalue
    assert study["teacher_to_student"]["per_class"][1]["p"] == pytest.approx(expected)
    card = _constructed(seed_metrics=metrics, resamples=0)
    assert card["significance"]["across_seeds"]["seeds"] == [0, 1, 2]
    md = render_markdown(card)
    assert "### Across seeds (0, 1, 2)" in md
    assert "teacher -> student: **50% of classes significantly changed** (Welch" in md
    with pytest.raises(EdgeKDError, match="needs at least 2 seeds"):
        welch_classwise(recall_t[:1], top1_t[:1], recall_s, top1_s, class_names=CLASSES)


def test_benjamini_hochberg_matches_the_step_up_rule():
    rng = np.random.default_rng(5)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 20)])
    _, rejected = benjamini_hochberg(p, alpha=0.05)
    order = np.argsort(p)
    passing = np.nonzero(p[order] <= 0.05 * np.arange(1, len(p) + 1) / len(p))[0]
    k = passing.max() + 1 if passing.size else 0
    expected = np.zeros(len(p), bool)
    expected[order[:k]] = True
    assert rejected.tolist() == expected.tolist() and k >= 5
