"""The worst-place gates: an artifact that breaks one (class, group) cell while its overall
agreement holds is caught, and the sweep and bench --all show the worst cell beside the mean."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekd.card.evaluation import evaluate, worst_agreement
from edgekd.card.gates import GATE_DEFAULTS, GatesConfig, evaluate_gates, failed_gates

CLASSES = [f"c{k}" for k in range(10)]
GROUPS = ["warm", "cool"]
PER_CELL = 50  # 10 classes x 2 groups x 50 images = 1000 test images


def _split() -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(10), 2 * PER_CELL)
    g = np.tile(np.repeat([0, 1], PER_CELL), 10)
    return y, g


def _student_logits(y: np.ndarray) -> np.ndarray:
    """Every image right, by a margin spread evenly from 0.1 to 5.0 within each cell."""
    logits = np.zeros((len(y), 10))
    margins = np.tile(np.linspace(0.1, 5.0, PER_CELL), len(y) // PER_CELL)
    logits[np.arange(len(y)), y] = margins
    return logits


def _damaged(
    logits: np.ndarray, y: np.ndarray, g: np.ndarray, *, cls: int, group: int, shift: float
) -> np.ndarray:
    """The artifact: the student's logits with cell (cls, group)'s true-class logit lowered by
    ``shift``: the images whose margin is below it now predict class 0 (or 1 for class 0)."""
    out = logits.copy()
    cell = (y == cls) & (g == group)
    out[cell, cls] -= shift
    out[cell, 0 if cls else 1] += 1e-3  # a definite runner-up instead of a tie
    return out


def _evaluation(name: str, predictions: np.ndarray, data, reference=None):
    return evaluate(
        name,
        predictions,
        data,
        kind="torch" if reference is None else "onnx",
        size_bytes=1,
        reference=reference,
        min_support=20,
    )


def test_a_cell_broken_under_a_passing_mean_is_caught_by_the_worst_place_gates():
    y, g = _split()
    data = SimpleNamespace(test=SimpleNamespace(labels=y, groups=g), class_names=CLASSES, group_names=GROUPS)
    logits = _student_logits(y)
    broken = _damaged(logits, y, g, cls=3, group=1, shift=2.05)
    student = _evaluation("student", logits.argmax(1), data)
    artifact = _evaluation("onnx_int8", broken.argmax(1), data, reference=student)
    # margins 0.1 (k + 1): those below 2.05 are k = 0..19: 20 of the cell's 50 predictions change
    vs = artifact.vs_student
    assert vs["prediction_agreement"] == pytest.approx(980 / 1000)
    assert vs["worst_cell_agreement"] == {"class": "c3", "group": "cool", "agreement": 30 / 50, "images": 50}
    assert vs["worst_group_agreement"] == {"group": "cool", "agreement": 480 / 500, "images": 500}
    assert vs["worst_group_accuracy_change"] == {"group": "cool", "accuracy_change": -20 / 500}
    assert vs["top1_change"] == pytest.approx(-0.02)

    card = {
        "models": {
            "teacher": student.card_entry(),
            "student": student.card_entry(),
            "onnx_int8": artifact.card_entry(),
        }
    }
    thresholds = {
        **GatesConfig().model_dump(),
        "min_agreement_vs_student": 0.97,
        "max_top1_drop_vs_student": 0.03,
    }
    gates = {g["name"]: g for g in evaluate_gates(card, thresholds) if g["artifact"] == "onnx_int8"}
    # the mean gates pass ...
    assert gates["min_agreement_vs_student"]["passed"] and gates["max_top1_drop_vs_student"]["passed"]
    # ... the worst cell (0.6 < 0.85) and the cool group's lost accuracy (0.04 > 0.03) do not
    assert (
        GatesConfig().model_dump()["min_cell_agreement_vs_student"]
        == GATE_DEFAULTS["min_cell_agreement_vs_student"]
        == 0.85
    )
    cell = gates["min_cell_agreement_vs_student"]
    assert (cell["value"], cell["passed"]) == (0.6, False)
    assert gates["max_group_recall_drop_vs_student"]["value"] == pytest.approx(0.04)
    assert not gates["max_group_recall_drop_vs_student"]["passed"]
    assert gates["min_group_agreement_vs_student"]["passed"]  # 0.96 >= 0.95: one cell of ten
    assert {g["name"] for g in failed_gates({"gates": list(gates.values())})} == {
        "min_cell_agreement_vs_student",
        "max_group_recall_drop_vs_student",
    }

    # the healthy artifact (a shift under every margin) passes every gate; the student has none
    healthy = _evaluation(
        "onnx_int8", _damaged(logits, y, g, cls=3, group=1, shift=0.05).argmax(1), data, reference=student
    )
    card["models"]["onnx_int8"] = healthy.card_entry()
    assert all(g["passed"] for g in evaluate_gates(card, thresholds))
    assert not any(
        g["name"].endswith("_vs_student") and g["artifact"] == "student"
        for g in evaluate_gates(card, thresholds)
    )


def test_a_whole_group_broken_fails_the_group_agreement_gate():
    # three cells of the cool group lose 20 of 50 each: group agreement 440 / 500 = 0.88 < 0.95
    y, g = _split()
    logits = _student_logits(y)
    broken = logits
    for cls in (2, 5, 7):
        broken = _damaged(broken, y, g, cls=cls, group=1, shift=2.05)
    summary = worst_agreement(
        y, logits.argmax(1), broken.argmax(1), g, class_names=CLASSES, group_names=GROUPS, min_support=20
    )
    assert summary["worst_group_agreement"]["agreement"] == pytest.approx(0.88)
    entry = {"kind": "onnx", "metrics": {}, "vs_student": summary}
    default = GATE_DEFAULTS["min_group_agreement_vs_student"]
    (gate,) = evaluate_gates({"models": {"onnx_int8": entry}}, {"min_group_agreement_vs_student": default})
    assert (gate["value"], gate["passed"]) == (pytest.approx(0.88), False)
    # a card from before the summary cannot show the gate holds: it fails rather than passes
    (old,) = evaluate_gates(
        {
            "models": {
                "onnx_int8": {"kind": "onnx", "metrics": {}, "vs_student": {"prediction_agreement": 1.0}}
            }
        },
        {"min_cell_agreement_vs_student": 0.85},
    )
    assert old["value"] is None and not old["passed"]


def test_min_support_keeps_small_cells_out_of_the_worst_cell():
    y, g = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 0, 0, 0])
    before, after = y.copy(), np.array([0, 0, 1, 1, 1, 0])
    # (0, cool) has one image, flipped: the worst of all cells; with min_support 2 it is left out
    assert worst_agreement(y, before, after, g, class_names=["a", "b"], group_names=GROUPS)[
        "worst_cell_agreement"
    ] == {"class": "a", "group": "cool", "agreement": 0.0, "images": 1}
    summary = worst_agreement(y, before, after, g, class_names=["a", "b"], group_names=GROUPS, min_support=2)
    assert summary["worst_cell_agreement"] == {"class": "b", "group": "warm", "agreement": 2 / 3, "images": 3}
    assert summary["worst_group_agreement"] == {"group": "warm", "agreement": 0.8, "images": 5}
    assert summary["worst_group_accuracy_change"] == {"group": "warm", "accuracy_change": pytest.approx(-0.2)}


def test_sweep_rows_and_table_carry_the_worst_cell_beside_the_agreement(tmp_path):
    from edgekd.sweep import format_sweep_table, result_row

    card = json.loads((Path(__file__).parent / "fixtures" / "tiny_card_v0.2.0.json").read_text())
    card["models"]["onnx_int8"] = {
        **card["models"]["onnx"],
        "vs_student": {
            "prediction_agreement": 0.98,
            "worst_cell_agreement": {"class": "square", "group": "warm", "agreement": 0.94, "images": 100},
        },
    }
    row = result_row({"distill.temperature": 4}, card, tmp_path)
    assert row["onnx_agreement"] == 1.0 and row["onnx_worst_cell_agreement"] is None  # an old card
    assert (
        row["onnx_int8_agreement"],
        row["onnx_int8_worst_cell_agreement"],
        row["onnx_int8_worst_cell"],
    ) == (0.98, 0.94, "square / warm")
    table = format_sweep_table([row], ["distill.temperature"])
    header, line = table.splitlines()[0], table.splitlines()[2]
    assert "onnx_int8 agreement" in header and "onnx_int8 worst cell" in header
    assert "0.9400 (square / warm)" in line


def test_bench_all_rows_show_the_worst_cell_beside_the_agreement():
    from edgekd.bench.all_artifacts import all_headers, all_rows

    worst = {"class": "square", "group": "warm", "agreement": 0.94, "images": 100}
    result = {
        "reference": {"vs_student_at_build": 1.0},
        "results": [
            {
                "artifact": {"file": "model.int8.onnx", "size_bytes": 10},
                "backend": "onnxruntime",
                "runtime": {"providers": ["CPUExecutionProvider"]},
                "eval": {
                    "top1": 0.9,
                    "agreement": {
                        "with": "model.onnx",
                        "prediction_agreement": 0.98,
                        "worst_cell_agreement": worst,
                    },
                },
                "results": [
                    {"batch": 1, "latency_ms": {"p50": 1.0}},
                    {"batch": 8, "latency_ms": {"p50": 5.0}},
                ],
            }
        ],
    }
    first, second = all_rows(result)
    assert (first["agreement"], first["worst_cell"]) == (0.98, "0.9400 square / warm")
    assert second["worst_cell"] is None
    headers = list(all_headers([first, second]))
    assert headers.index("worst_cell") == headers.index("agreement") + 1
