"""Distillation methods: each loss against hand-worked values, the registry and config errors,
the teacher-outputs cache, and a tiny end-to-end build per method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgekd.distill import OBJECTIVES, Batch, build_objective, kd_loss
from edgekd.distill import rkd as rkd_module
from edgekd.distill.adaptive import AdaptiveKDLoss, subgroup_weights
from edgekd.distill.ctkd import CTKDLoss, cosine_curriculum
from edgekd.distill.kdpp import KDPPLoss, class_means, nd_loss
from edgekd.distill.rkd import normalised_distances, rkd_angle_loss, rkd_distance_loss
from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


# ----------------------------------------------------------------------------------------- kd
def test_kd_loss_hand_worked_with_t_squared_scaling():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    # T = 1: teacher probabilities (3/4, 1/4) against the student's (1/2, 1/2).
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(_kl([0.75, 0.25], [0.5, 0.5]), abs=1e-6)
    # T = 2: logits halve, so the teacher's odds are sqrt(3):1; the KL is scaled by T^2 = 4.
    r = math.sqrt(3.0)
    expected = 4.0 * _kl([r / (r + 1), 1 / (r + 1)], [0.5, 0.5])
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(expected, abs=1e-6)


def test_kd_objective_mixes_soft_and_hard_and_is_zero_soft_when_equal():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    batch = Batch(
        images=torch.zeros(2),
        labels=torch.tensor([0, 2]),
        groups=torch.tensor([0, 1]),
        teacher_logits=logits.clone(),
    )
    objective = OBJECTIVES.get("kd")(temperature=4.0, alpha=0.9)
    ce = torch.nn.functional.cross_entropy(logits, batch.labels)
    assert objective(logits, batch).item() == pytest.approx(0.1 * ce.item(), abs=1e-6)


# ---------------------------------------------------------------------------------------- rkd
def test_rkd_distances_are_normalised_by_their_mean_nonzero_distance():
    f = torch.tensor([[0.0], [1.0], [3.0]])
    # pairwise 1, 3, 2; the mean over the six off-diagonal entries is 2
    expected = torch.tensor([[0.0, 0.5, 1.5], [0.5, 0.0, 1.0], [1.5, 1.0, 0.0]])
    assert torch.allclose(normalised_distances(f), expected)
    # scale-free: a teacher 10x wider apart has the same structure, so no loss
    assert rkd_distance_loss(f, 10.0 * f).item() == pytest.approx(0.0, abs=1e-7)


def test_rkd_distance_huber_hand_worked():
    student = torch.tensor([[0.0], [1.0], [3.0]])  # normalised: 0.5, 1.5, 1.0
    teacher = torch.tensor([[0.0], [1.0], [2.0]])  # pairwise 1, 2, 1; mean 4/3 -> 0.75, 1.5, 0.75
    diffs = [0.5 - 0.75, 1.5 - 1.5, 1.0 - 0.75]  # |d| < 1: huber = d^2 / 2
    expected = sum(0.5 * d * d for d in diffs) / 3
    assert rkd_distance_loss(student, teacher).item() == pytest.approx(expected, abs=1e-6)


def test_rkd_angles_hand_worked_and_zero_for_equal_structure():
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    angles = rkd_module._angles(f, slice(0, 3))
    # anchor j = 0: e_10 = (1, 0), e_20 = (0, 1) -> cos 0; anchor j = 1: e_01 = (-1, 0),
    # e_21 = (-1, 1)/sqrt 2 -> cos 1/sqrt 2
    assert angles[0, 1, 2].item() == pytest.approx(0.0, abs=1e-7)
    assert angles[1, 0, 2].item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert angles[0, 1, 1].item() == pytest.approx(1.0, abs=1e-6)
    rotated = f @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]]) * 3.0  # rotation + scale keep angles
    assert rkd_angle_loss(f, rotated).item() == pytest.approx(0.0, abs=1e-7)


def test_rkd_angle_chunks_bound_memory_without_changing_the_value(monkeypatch):
    torch.manual_seed(0)
    student, teacher = torch.randn(12, 5), torch.randn(12, 7)
    whole = rkd_angle_loss(student, teacher).item()
    monkeypatch.setattr(rkd_module, "_ANGLE_CHUNK_BYTES", 12 * 7 * 4 * 2)  # two anchors a chunk
    assert rkd_angle_loss(student, teacher).item() == pytest.approx(whole, rel=1e-6)
    # batch 128 of 1536-d features: each chunk holds at most the budget
    chunk = max(1, rkd_module._ANGLE_CHUNK_BYTES // (128 * 1536 * 4))
    assert chunk * 128 * 1536 * 4 <= 64 << 20 or chunk == 1


# --------------------------------------------------------------------------------------- ctkd
def test_cosine_curriculum_rises_from_zero_to_one():
    assert cosine_curriculum(0, 10) == 0.0
    assert cosine_curriculum(5, 10) == pytest.approx(0.5)
    assert cosine_curriculum(10, 10) == pytest.approx(1.0)
    assert cosine_curriculum(25, 10) == pytest.approx(1.0)


def test_ctkd_reverses_the_temperature_gradient_only():
    torch.manual_seed(0)
    objective = CTKDLoss(t_min=1.0, t_range=20.0, initial_temperature=4.0, alpha=0.9, curriculum_share=0.5)
    assert objective.temperature.item() == pytest.approx(4.0, rel=1e-6)
    objective.start_epoch(8, epochs=2)  # past the curriculum: full strength
    assert objective.strength == pytest.approx(1.0)

    student = torch.randn(6, 3, requires_grad=True)
    teacher = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    batch = Batch(images=torch.zeros(6), labels=labels, groups=labels * 0, teacher_logits=teacher)
    objective(student, batch).backward()

    # the same loss with the temperature as a plain leaf: the true gradients
    theta = objective.theta.detach().clone().requires_grad_(True)
    plain_student = student.detach().clone().requires_grad_(True)
    tau = 1.0 + 20.0 * torch.sigmoid(theta)
    plain = 0.9 * kd_loss(plain_student, teacher, tau) + 0.1 * torch.nn.functional.cross_entropy(
        plain_student, labels
    )
    plain.backward()
    assert objective.theta.grad.item() == pytest.approx(-theta.grad.item(), rel=1e-5)
    assert torch.allclose(student.grad, plain_student.grad, atol=1e-7)

    objective.zero_grad()
    objective.start_epoch(0, epochs=2)  # strength 0: the temperature receives nothing
    objective(student, batch).backward()
    assert objective.theta.grad.item() == 0.0
    assert set(objective.epoch_metrics()) == {"temperature", "reversal_strength"}


# --------------------------------------------------------------------------------------- kdpp
def test_nd_loss_hand_worked():
    centres = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    projected = torch.tensor([[3.0, 4.0], [2.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    # sample 0: <(3,4), (1,0)> = 3, max(5, 1) = 5 -> 0.4; sample 1: 2 / max(2, 1) = 1 -> 0
    assert nd_loss(projected, teacher, labels, centres).item() == pytest.approx(0.2, abs=1e-6)
    # zero where the student equals the teacher along its class centre, and it stays zero
    same = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert nd_loss(same, same, torch.tensor([0, 1]), centres).item() == pytest.approx(0.0, abs=1e-7)


def test_class_means():
    features = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], dtype=np.float32)
    means = class_means(features, np.array([0, 0, 2]), num_classes=3)
    assert means.tolist() == [[2.0, 1.0], [0.0, 0.0], [5.0, 5.0]]


@pytest.mark.parametrize("epochs", [2, 20])
def test_kdpp_warmup_and_ctkd_curriculum_scale_with_the_epochs(epochs):
    """Both are shares of the recipe's epochs: KD++ reaches full KD weight after 30% of them
    (epoch 1 of 2 gives 1 / (0.3 * 2) > 1 -> 1; epoch 1 of 20 gives 1 / 6), CTKD's reversal
    reaches full strength after half of them (2 epochs: E_c = 1; 20 epochs: E_c = 10)."""
    kdpp = KDPPLoss(warmup_share=0.3)
    weights = []
    for epoch in range(epochs):
        kdpp.start_epoch(epoch, epochs)
        weights.append(kdpp.kd_weight)
    ctkd = CTKDLoss(curriculum_share=0.5)
    strengths = []
    for epoch in range(epochs):
        ctkd.start_epoch(epoch, epochs)
        strengths.append(ctkd.strength)
    if epochs == 2:
        assert weights == [1.0, 1.0]
        assert strengths == [0.0, pytest.approx(1.0)]
    else:
        assert weights[:6] == pytest.approx([k / 6 for k in range(1, 7)]) and weights[6:] == [1.0] * 14
        assert strengths[0] == 0.0 and strengths[5] == pytest.approx(0.5)
        assert strengths[10:] == [pytest.approx(1.0)] * 10
        assert all(a < b for a, b in zip(strengths[:10], strengths[1:11]))
    assert KDPPLoss(warmup_share=0.0).kd_weight == 0.0  # before start_epoch
    no_warmup = KDPPLoss(warmup_share=0.0)
    no_warmup.start_epoch(0, epochs)
    assert no_warmup.kd_weight == 1.0


def test_old_count_keys_say_what_replaced_them():
    from edgekd.errors import EdgeKDError
    from edgekd.recipe import parse_recipe

    base = {
        "name": "x",
        "teacher": {"arch": "test_efficientnet", "epochs": 1},
        "student": {"arch": "test_efficientnet", "epochs": 1},
    }
    with pytest.raises(EdgeKDError, match="warmup_epochs was replaced by warmup_share"):
        parse_recipe({**base, "distill": {"method": "kdpp", "warmup_epochs": 20}})
    with pytest.raises(EdgeKDError, match="curriculum_epochs was replaced by curriculum_share"):
        parse_recipe({**base, "distill": {"method": "ctkd", "curriculum_epochs": 10}})


def test_kdpp_projection_receives_gradients_and_kd_warms_up():
    torch.manual_seed(0)
    objective = KDPPLoss(temperature=4.0, warmup_share=0.4, nd_weight=2.0)
    objective.build(student_features=8, teacher_features=12)
    objective.centres = torch.randn(3, 12)
    objective.start_epoch(0, epochs=10)
    assert objective.kd_weight == pytest.approx(0.25)
    objective.start_epoch(7, epochs=10)
    assert objective.kd_weight == 1.0
    features = torch.randn(5, 8, requires_grad=True)
    batch = Batch(
        images=torch.zeros(5),
        labels=torch.tensor([0, 1, 2, 0, 1]),
        groups=torch.zeros(5),
        features=features,
        teacher_logits=torch.randn(5, 3),
        teacher_features=torch.randn(5, 12),
    )
    objective(torch.randn(5, 3, requires_grad=True), batch).backward()
    linear = objective.projection[1]
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    assert features.grad is not None and features.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------- adaptive
def test_subgroup_weights_follow_teacher_accuracy():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 0, 0, 0])  # class 0: 3/4 right, class 1: 1/4
    per_class = subgroup_weights(pred, labels, groups, alpha=0.8, num_classes=2, num_groups=2, per="class")
    np.testing.assert_allclose(per_class, [[0.8, 0.8], [0.8 / 3, 0.8 / 3]])
    per_cell = subgroup_weights(pred, labels, groups, alpha=0.8, num_classes=2, num_groups=2, per="cell")
    # cells: (0,0) 2/2, (0,1) 1/2, (1,0) 1/2, (1,1) 0/2; the best cell keeps alpha
    np.testing.assert_allclose(per_cell, [[0.8, 0.4], [0.4, 0.0]])


def test_adaptive_loss_weights_each_sample_by_its_cell():
    objective = AdaptiveKDLoss(temperature=1.0, alpha=0.9, per="cell")
    objective.weights = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    logits = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [1.0, 0.0]])
    batch = Batch(
        images=torch.zeros(2),
        labels=torch.tensor([0, 0]),
        groups=torch.tensor([0, 1]),
        teacher_logits=teacher,
    )
    # sample 0: weight 1 -> pure KL((3/4, 1/4) || (1/2, 1/2)); sample 1: weight 0 -> pure CE
    ce_1 = -math.log(math.e / (math.e + 1))
    expected = (_kl([0.75, 0.25], [0.5, 0.5]) + ce_1) / 2
    assert objective(logits, batch).item() == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------ recipe errors
def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(EdgeKDError) as err:
        parse_recipe({"name": "x", "distill": {"method": "fitnet"}})
    message = str(err.value)
    assert "distill.method" in message and "'fitnet'" in message
    for name in ("adaptive", "ctkd", "kd", "kdpp", "rkd"):
        assert name in message
    assert set(OBJECTIVES.names()) >= {"kd", "rkd", "ctkd", "kdpp", "adaptive"}


def test_a_key_of_another_method_is_rejected_by_name():
    with pytest.raises(EdgeKDError) as err:
        parse_recipe({"name": "x", "distill": {"method": "kd", "t_min": 2}})
    assert "distill.t_min: belongs to distill.method: ctkd, not kd" in str(err.value)
    with pytest.raises(EdgeKDError, match="initial_temperature 30 must lie strictly between"):
        parse_recipe({"name": "x", "distill": {"method": "ctkd", "initial_temperature": 30}})


def test_switching_method_on_the_command_line_keeps_shared_keys_only():
    from edgekd.recipe import apply_overrides

    raw = {"name": "x", "distill": {"method": "kd", "temperature": 8, "alpha": 0.5}}
    switched = parse_recipe(apply_overrides(raw, ["distill.method=rkd"]))
    assert switched.distill.method == "rkd" and switched.distill.temperature == 8
    with pytest.raises(EdgeKDError, match="distill.alpha: belongs to"):
        parse_recipe(apply_overrides(raw, ["distill.method=rkd", "distill.alpha=0.3"]))


def test_distill_without_method_means_kd():
    recipe = parse_recipe({"name": "x", "distill": {"temperature": 8}})
    assert recipe.distill.method == "kd" and recipe.distill.temperature == 8
    assert type(build_objective(recipe.distill)).__name__ == "KDLoss"


# ------------------------------------------------------------------------------ teacher cache
def test_teacher_outputs_are_computed_once_and_read_back(tmp_path):
    import timm

    from edgekd.data import load_data
    from edgekd.data.trifeature import TrifeatureConfig
    from edgekd.train.teacher_outputs import TeacherOutputs, teacher_forward

    data = load_data(TrifeatureConfig(image_size=32, train_size=40, val_size=16, test_size=16), seed=0)
    torch.manual_seed(0)
    teacher = timm.create_model("test_efficientnet", num_classes=4).eval()
    first = TeacherOutputs(teacher, data, cache_dir=tmp_path)
    logits, features = first.for_epoch(1)
    assert first.computed == 1 and (tmp_path / "epoch-1.npz").is_file()
    again = TeacherOutputs(teacher, data, cache_dir=tmp_path)
    cached_logits, cached_features = again.for_epoch(1)
    assert again.computed == 0
    live_logits, live_features = teacher_forward(teacher, data.train_for_epoch(1).images, data.mean, data.std)
    np.testing.assert_array_equal(cached_logits, live_logits)
    np.testing.assert_array_equal(cached_features, live_features)
    assert features.shape == (40, teacher.num_features) and logits.shape == (40, 4)


# --------------------------------------------------------------------------- end to end per method
@pytest.mark.parametrize("method", ["rkd", "ctkd", "kdpp", "adaptive"])
def test_tiny_build_per_method(method, tiny_recipe, tiny_runs):
    from edgekd.pipeline import build

    overrides = [f"distill.method={method}"]  # keys the method lacks (alpha for rkd) are dropped
    result = build(tiny_recipe, out=tiny_runs, overrides=tuple(overrides), log=lambda m: None)
    assert result.stage_status["teacher"] == "reused"  # only the student changes per method
    card = result.card
    assert card["distillation"]["method"] == method
    assert card["models"]["student"]["metrics"]["top1"] is not None
    history = [r for r in _history(result.run_dir)]
    assert len(history) == 2
    if method == "ctkd":
        assert all("temperature" in r for r in history)
        assert card["distillation"]["learned"]["final_temperature"] > 1.0
    if method == "adaptive":
        cells = card["distillation"]["learned"]["alpha_by_cell"]  # per: cell by default
        assert set(cells) == set(card["task"]["classes"])
        # adaptive has an alpha too, so tiny.yaml's 0.9 is kept: the best cell gets all of it
        assert max(max(v.values()) for v in cells.values()) == pytest.approx(0.9)


def _history(run_dir):
    import json

    return json.loads((run_dir / "stages" / "student" / "history.json").read_text())


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_recipe):
    """A runs directory whose teacher and baseline are trained once for all methods."""
    from edgekd.pipeline import build

    out = tmp_path_factory.mktemp("methods")
    build(tiny_recipe, out=out, log=lambda m: None)
    return out
