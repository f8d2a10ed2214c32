"""Metrics and the KD loss against values worked out by hand."""

import math

import numpy as np
import pytest

from edgekd.fairness.metrics import evaluate_predictions

# Two groups of six images, two classes. Worked by hand:
#   group a: y = 1 1 0 0 0 0, pred = 1 1 1 0 0 0
#   group b: y = 1 1 0 0 0 0, pred = 1 0 0 0 0 0
Y = np.array([1, 1, 0, 0, 0, 0] * 2)
P = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
G = np.array([0] * 6 + [1] * 6)


@pytest.fixture
def metrics():
    return evaluate_predictions(Y, P, G, class_names=["neg", "pos"], group_names=["a", "b"])


def test_top1_and_macro_scores(metrics):
    assert metrics["top1"] == pytest.approx(10 / 12)
    # recall: class neg 7/8, class pos 3/4; precision: neg 7/8, pos 3/4
    assert metrics["macro_recall"] == pytest.approx((7 / 8 + 3 / 4) / 2)
    assert metrics["macro_precision"] == pytest.approx((7 / 8 + 3 / 4) / 2)


def test_per_class_recall_by_group_and_disparity(metrics):
    neg, pos = metrics["per_class"]
    # class pos: recall a = 2/2, b = 1/2 -> disparity a - b = +0.5
    assert pos["recall_by_group"] == {"a": 1.0, "b": 0.5}
    assert pos["disparity"] == pytest.approx(0.5)
    # class neg: recall a = 3/4 (one neg predicted pos), b = 4/4 -> disparity -0.25
    assert neg["recall_by_group"] == {"a": 0.75, "b": 1.0}
    assert neg["disparity"] == pytest.approx(-0.25)
    assert metrics["mean_abs_disparity"] == pytest.approx(0.375)
    assert metrics["max_abs_disparity"] == pytest.approx(0.5)
    assert metrics["max_abs_disparity_class"] == "pos"


def test_demographic_parity_difference_one_vs_rest(metrics):
    neg, pos = metrics["per_class"]
    # P(pred = pos | a) = 3/6, P(pred = pos | b) = 1/6; the same gap for neg
    assert pos["dpd"] == pytest.approx(1 / 3)
    assert neg["dpd"] == pytest.approx(1 / 3)
    assert metrics["dpd"]["mean"] == pytest.approx(1 / 3)


def test_equalized_odds_difference_one_vs_rest(metrics):
    neg, pos = metrics["per_class"]
    # pos: TPR 1 vs 1/2 (gap 0.5), FPR 1/4 vs 0 (gap 0.25) -> 0.5
    assert pos["eod"] == pytest.approx(0.5)
    # neg: TPR 3/4 vs 1 (gap 0.25), FPR 0/2 vs 1/2 (gap 0.5) -> 0.5
    assert neg["eod"] == pytest.approx(0.5)
    assert metrics["eod"] == {"mean": pytest.approx(0.5), "worst": pytest.approx(0.5), "worst_class": "neg"}


def test_three_groups_use_max_minus_min():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1])
    g = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2])
    m = evaluate_predictions(y, p, g, class_names=["x", "y"], group_names=["a", "b", "c"])
    # class x recall: a 1, b 1/2, c 1/2 -> max - min = 0.5
    assert m["per_class"][0]["disparity"] == pytest.approx(0.5)
    assert m["per_class"][1]["disparity"] == pytest.approx(0.0)


def test_class_without_images_in_a_group_is_reported_not_divided_by_zero():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0, 1, 1, 1, 0])
    g = np.array([0, 1, 0, 0, 1])
    m = evaluate_predictions(y, p, g, class_names=["x", "y"], group_names=["a", "b"])
    x, yy = m["per_class"]
    assert x["recall_by_group"] == {"a": 1.0, "b": 0.0}
    assert yy["recall_by_group"]["b"] == 0.0
    m2 = evaluate_predictions(
        np.array([0, 0, 1]),
        np.array([0, 0, 1]),
        np.array([0, 1, 0]),
        class_names=["x", "y"],
        group_names=["a", "b"],
    )
    assert m2["per_class"][1]["recall_by_group"]["b"] is None
    assert m2["per_class"][1]["disparity"] is None
    assert m2["classes_without_support"] == ["y"]
    assert m2["mean_abs_disparity"] == pytest.approx(0.0)  # only class x counts


def test_kd_loss_matches_hand_computation():
    torch = pytest.importorskip("torch")
    from edgekd.distill import Batch, KDLoss, kd_loss

    student = torch.zeros(1, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # softmax at T=1: (3/4, 1/4)
    # T = 1: KL((3/4, 1/4) || (1/2, 1/2)) = 3/4 ln(3/2) + 1/4 ln(1/2)
    t1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(t1, rel=1e-5)
    # T = 2: teacher softmax (sqrt3, 1) / (sqrt3 + 1); KL to uniform, times T^2 = 4
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    t2 = 4 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p)))
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(t2, rel=1e-5)
    # alpha mixes the soft term with cross-entropy on the label (CE of uniform logits = ln 2)
    batch = Batch(
        images=torch.zeros(1), labels=torch.tensor([0]), groups=torch.tensor([0]), teacher_logits=teacher
    )
    loss = KDLoss(temperature=2.0, alpha=0.9)(student, batch)
    assert loss.item() == pytest.approx(0.9 * t2 + 0.1 * math.log(2), rel=1e-5)


def test_kd_loss_is_zero_when_student_equals_teacher():
    torch = pytest.importorskip("torch")
    from edgekd.distill import kd_loss

    logits = torch.randn(8, 5)
    assert kd_loss(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
