"""Issue 14: each headline metric is declared once, in the metric table, and every consumer reads
it. A metric registered here (and nowhere else) shows up in the card, its Markdown, the terminal
table, a gate and the sweep's CSV without any of those modules knowing its name."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgekd.card.build import build_card
from edgekd.card.evaluation import evaluate
from edgekd.card.gates import evaluate_gates
from edgekd.card.markdown import render_markdown
from edgekd.card.table import format_table, summary_rows
from edgekd.fairness.counts import CellCounts
from edgekd.fairness.metric_table import METRICS, Metric, gated_metrics, headline, register_metric
from edgekd.recipe import load_recipe, parse_recipe
from edgekd.sweep import run_sweep

CLASSES = ["cat", "dog"]


def worst_cell_recall(counts: CellCounts) -> float | None:
    """Recall of the worst (class, group) cell with test images."""
    recall = counts.tpr
    return None if np.all(np.isnan(recall)) else float(np.nanmin(recall))


@pytest.fixture
def worst_cell_metric():
    metric = register_metric(
        Metric(
            key="worst_cell_recall",
            label="worst cell",
            title="worst-cell recall",
            description="recall of the worst (class, group) cell",
            higher_is_better=True,
            from_counts=worst_cell_recall,
            gate="min_worst_cell_recall",
        )
    )
    yield metric
    METRICS.remove(metric.key)


def _card(recipe):
    # 8 images: class 0 in groups 0/1, class 1 in groups 0/1; the student misses one image of
    # (class 1, group 1): cell recalls 1, 1, 1, 0.5 -> worst cell 0.5
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    student = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    data = SimpleNamespace(
        test=_Split(y, groups),
        train=[0] * 4,
        val=[0] * 2,
        num_classes=2,
        class_names=CLASSES,
        group_names=["a", "b"],
        protected_attribute="colour",
        description={"source": "handmade", "synthetic": True, "summary": "hand-made"},
    )
    support = recipe.card.min_support
    evaluations = {
        name: evaluate(
            name, pred, data, kind="torch", size_bytes=1_000_000, details={"arch": "net"}, min_support=support
        )
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
        min_support=support,
    )
    return build_card(recipe, data, evaluations)


class _Split(SimpleNamespace):
    def __init__(self, labels, groups):
        super().__init__(labels=labels, groups=groups)

    def __len__(self):
        return len(self.labels)


def test_the_four_headline_metrics_are_read_from_the_card_metrics():
    metrics = {"top1": 0.5, "mean_abs_disparity": 0.25, "dpd": {"mean": 0.125}, "eod": {"mean": None}}
    assert headline(metrics) == {"top1": 0.5, "mean_abs_disparity": 0.25, "dpd": 0.125, "eod": None}
    assert [m.gate for m in gated_metrics()] == ["min_top1", "max_mean_abs_disparity", "max_dpd", "max_eod"]
    assert [m.comparison for m in METRICS.values()] == [">=", "<=", "<=", "<="]


def test_a_metric_added_through_the_table_reaches_card_markdown_table_gates(worst_cell_metric):
    recipe = parse_recipe({"name": "made", "card": {"bootstrap_resamples": 50}})
    card = _card(recipe)
    student = card["models"]["student"]
    assert student["metrics"]["worst_cell_recall"] == pytest.approx(0.5)  # hand-worked above
    assert card["models"]["teacher"]["metrics"]["worst_cell_recall"] == pytest.approx(1.0)
    ci = student["ci"]["worst_cell_recall"]
    assert 0.0 <= ci["low"] <= ci["high"] <= 1.0

    md = render_markdown(card)
    assert "| mean EOD | worst-cell recall | worst recall (class, colour) |" in md  # a headline column
    assert "recall of the worst (class, group) cell (model.onnx through onnx)" in md  # front matter

    rows = summary_rows(card)
    assert rows[2]["worst_cell_recall"] == pytest.approx(0.5)
    table = format_table(rows)
    assert "worst cell" in table.splitlines()[0] and "0.5000" in table.splitlines()[4]

    gates = evaluate_gates(card, {"min_worst_cell_recall": 0.75})
    assert [(g["artifact"], g["value"], g["passed"]) for g in gates] == [
        ("student", 0.5, False),
        ("onnx", 0.5, False),
    ]


def test_a_metric_added_through_the_table_reaches_the_sweep_csv(worst_cell_metric, tiny_recipe, tmp_path):
    # A finished point: its bundle holds the card of the same resolved recipe, so the sweep reads
    # it instead of training, and only the table and CSV code runs.
    point = load_recipe(tiny_recipe, ["distill.temperature=2", "name=tiny-distill.temperature-2"])
    card = _card(point)
    bundle = tmp_path / "tiny" / "sweep" / "distill.temperature=2" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "card.json").write_text(json.dumps(card))
    result = run_sweep(tiny_recipe, ["distill.temperature=2"], out=tmp_path, log=lambda m: None)
    with open(result.csv_path) as fh:
        rows = list(csv.DictReader(fh))
    intervals = [
        f"{m}_{end}"
        for m in ("top1", "mean_abs_disparity", "dpd", "eod", "worst_cell_recall")
        for end in ("low", "high")
    ]
    assert list(rows[0]) == [
        "distill.temperature",
        "top1",
        "mean_abs_disparity",
        "dpd",
        "eod",
        "worst_cell_recall",
        *intervals,
        "ci_level",
        "adversary_top1",
        "adversary_reference",
        "teacher_top1",
        "teacher_mean_abs_disparity",
        "baseline_top1",
        "baseline_mean_abs_disparity",
        *[
            f"{name}_{column}"
            for name in ("onnx", "onnx_int8", "onnx_int8_trt", "onnx_fp16")
            for column in ("agreement", "worst_cell_agreement", "worst_cell")
        ],
        "bundle",
        "tarball",
    ]
    assert float(rows[0]["worst_cell_recall"]) == pytest.approx(0.5)
    ci = card["models"]["student"]["ci"]["worst_cell_recall"]  # its interval rides along too
    assert (float(rows[0]["worst_cell_recall_low"]), float(rows[0]["worst_cell_recall_high"])) == (
        ci["low"],
        ci["high"],
    )
