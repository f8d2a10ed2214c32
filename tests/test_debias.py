"""Adversarial debiasing: the reversed adversary gradient really reaches the student, the
schedule, and the effect's direction on a generated set with a strong shortcut."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekd.debias import AdversarialDebiasing, Reweighing, cell_weights, lambda_at, with_debiasing
from edgekd.debias.adversarial import adversary_reference
from edgekd.distill import Batch, CrossEntropy, KDLoss
from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe


def _student_grads(weight: float, criterion: str = "demographic_parity"):
    torch.manual_seed(0)
    student = torch.nn.Linear(3, 2)
    objective = AdversarialDebiasing(CrossEntropy(), weight=weight, criterion=criterion, hidden=(4,))
    objective.build(num_classes=2, num_groups=2, feature_width=3)
    objective.start_epoch(0, epochs=1)
    x = torch.randn(8, 3)
    batch = Batch(images=x, labels=torch.tensor([0, 1] * 4), groups=torch.tensor([0, 0, 1, 1] * 2))
    objective(student(x), batch).backward()
    got = [p.grad.clone() for p in student.parameters()]

    # The two pieces by hand, with the same weights and no reversal.
    def grads_of(loss_fn):
        student.zero_grad()
        objective.zero_grad()
        loss_fn().backward()
        return [p.grad.clone() for p in student.parameters()]

    def adversary_loss():
        z = F.softmax(student(x), dim=1)
        if criterion == "equalized_odds":
            z = torch.cat([z, F.one_hot(batch.labels, 2).float()], dim=1)
        return F.cross_entropy(objective.adversary(z), batch.groups)

    task = grads_of(lambda: F.cross_entropy(student(x), batch.labels))
    adversary = grads_of(adversary_loss)
    adversary_param_grad = objective.adversary.net[0].weight.grad.clone()
    return got, task, adversary, objective, adversary_param_grad


@pytest.mark.parametrize("criterion", ["demographic_parity", "equalized_odds"])
def test_student_receives_the_reversed_adversary_gradient(criterion):
    got, task, adversary, _, _ = _student_grads(0.5, criterion)
    for g, t, a in zip(got, task, adversary):
        assert torch.allclose(g, t - 0.5 * a, atol=1e-6)
        assert not torch.allclose(a, torch.zeros_like(a))  # the adversary's gradient is not 0


def test_lambda_zero_gives_the_student_none_of_it():
    got, task, _, _, _ = _student_grads(0.0)
    for g, t in zip(got, task):
        assert torch.allclose(g, t, atol=1e-7)


def test_adversary_itself_descends_its_loss():
    torch.manual_seed(0)
    objective = AdversarialDebiasing(CrossEntropy(), weight=2.0, hidden=(4,))
    objective.build(num_classes=2, num_groups=2, feature_width=3)
    objective.start_epoch(0, epochs=1)
    logits = torch.randn(6, 2)
    batch = Batch(
        images=logits, labels=torch.tensor([0, 1, 0, 1, 0, 1]), groups=torch.tensor([0, 0, 0, 1, 1, 1])
    )
    objective(logits, batch).backward()
    reversed_grad = objective.adversary.net[0].weight.grad.clone()
    objective.zero_grad()
    F.cross_entropy(objective.adversary(F.softmax(logits, 1)), batch.groups).backward()
    assert torch.allclose(reversed_grad, objective.adversary.net[0].weight.grad, atol=1e-7)
    metrics = objective.epoch_metrics()
    assert metrics["adversary_reference"] == 0.5 and metrics["debias_lambda"] == 2.0
    assert 0.0 <= metrics["adversary_top1"] <= 1.0


def test_adversary_reference_hand_worked():
    """A split of 10 images: class 0 has 4 in group 0 and 1 in group 1, class 1 has 1 and 4.
    Demographic parity: the output may not tell the group at all, so the best guess is the
    larger group, 5 of 10 -> 0.5. Equalized odds: the adversary knows the label, so it guesses
    the class's majority group: (4 + 4) / 10 -> 0.8."""
    cells = np.array([[4, 1], [1, 4]])
    assert adversary_reference(cells, "demographic_parity") == 0.5
    assert adversary_reference(cells, "equalized_odds") == 0.8
    # three groups, unbalanced: group sizes 2+3=5, 1+0=1, 0+4=4 of 10
    cells = np.array([[2, 1, 0], [3, 0, 4]])
    assert adversary_reference(cells, "demographic_parity") == 0.5
    assert adversary_reference(cells, "equalized_odds") == pytest.approx((2 + 4) / 10)
    assert adversary_reference(np.zeros((2, 2)), "equalized_odds") is None


def test_adversary_reference_counts_the_epochs_images():
    """The objective counts (class, group) cells of every batch it sees in an epoch: labels
    [0, 1, 0, 1, 0, 1] with groups [0, 0, 0, 1, 1, 1] give cells [[2, 1], [1, 2]], so the
    equalized-odds reference is 4 / 6."""
    objective = AdversarialDebiasing(CrossEntropy(), weight=1.0, criterion="equalized_odds")
    objective.build(num_classes=2, num_groups=2, feature_width=3)
    objective.start_epoch(0, epochs=1)
    batch = Batch(
        images=torch.zeros(6, 2),
        labels=torch.tensor([0, 1, 0, 1, 0, 1]),
        groups=torch.tensor([0, 0, 0, 1, 1, 1]),
    )
    for half in (slice(0, 3), slice(3, 6)):
        part = Batch(images=batch.images[half], labels=batch.labels[half], groups=batch.groups[half])
        objective(torch.randn(3, 2), part)
    assert objective.epoch_metrics()["adversary_reference"] == pytest.approx(4 / 6)
    objective.start_epoch(1, epochs=2)  # a new epoch counts afresh
    assert objective.epoch_metrics()["adversary_reference"] is None


def test_lambda_schedule_warmup_and_ramp():
    assert lambda_at(0, weight=0.5, warmup_epochs=2, schedule="constant", ramp_epochs=0) == 0.0
    assert lambda_at(2, weight=0.5, warmup_epochs=2, schedule="constant", ramp_epochs=0) == 0.5
    assert lambda_at(2, weight=1.0, warmup_epochs=2, schedule="linear", ramp_epochs=4) == 0.25
    assert lambda_at(9, weight=1.0, warmup_epochs=2, schedule="linear", ramp_epochs=4) == 1.0


def test_debiasing_wraps_any_objective_and_keeps_its_needs():
    recipe = parse_recipe(
        {"name": "x", "debias": {"method": "adversarial", "lambda": 0.7, "criterion": "equalized_odds"}}
    )
    wrapped = with_debiasing(KDLoss(), recipe.debias)
    assert wrapped.uses_teacher and wrapped.weight == 0.7 and wrapped.criterion == "equalized_odds"
    assert with_debiasing(CrossEntropy(), parse_recipe({"name": "x"}).debias).__class__ is CrossEntropy


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"method": "adversarial", "lambda": -1}, "debias.lambda = -1"),
        ({"method": "adversary"}, "debias.method = 'adversary'"),
        ({"method": "adversarial", "criterion": "parity"}, "debias.criterion = 'parity'"),
        ({"method": "adversarial", "lamda": 1}, "debias.lamda: unknown key; allowed here: method, lambda"),
        ({"method": "adversarial", "apply_to": ["teacher"]}, "debias.apply_to.0 = 'teacher'"),
        ({"reweigh": "cells"}, "debias.reweigh = 'cells'"),
    ],
)
def test_bad_debias_config_is_named(raw, needle):
    with pytest.raises(EdgeKDError) as err:
        parse_recipe({"name": "x", "debias": raw})
    assert needle in str(err.value)


def test_adversary_lowers_group_information_and_disparity_on_a_shortcut_set(tmp_path):
    """Same seed, same data, same student: lambda > 0 against lambda = 0."""
    from edgekd.data import load_data
    from edgekd.models import create_model
    from edgekd.stages import Stage
    from edgekd.train import fit

    recipe = parse_recipe(
        {
            "name": "shortcut",
            "seed": 0,
            "data": {
                "image_size": 32,
                "num_classes": 2,
                "bias": 0.95,
                "train_size": 512,
                "val_size": 256,
                "test_size": 64,
            },
            "student": {"arch": "test_efficientnet", "epochs": 3, "batch_size": 32, "lr": 0.01},
        }
    )
    data = load_data(recipe.data, seed=0)
    results = {}
    for weight in (0.0, 3.0):
        torch.manual_seed(0)
        model = create_model(recipe.student, data.num_classes, key="student")
        objective = AdversarialDebiasing(CrossEntropy(), weight=weight, hidden=(16,))
        stage = Stage(tmp_path, f"lambda-{weight}", {"w": weight})
        stage.start()
        history = fit(model, objective, data, recipe.student, stage, seed=0, log=lambda m: None)
        results[weight] = history[-1]
    plain, debiased = results[0.0], results[3.0]
    assert debiased["adversary_top1"] < plain["adversary_top1"]
    assert debiased["val_mean_abs_disparity"] < plain["val_mean_abs_disparity"]


def test_reweighing_weights_hand_worked():
    """10 images: class 0 has 4 of group 0 and 1 of group 1, class 1 the reverse.
    P(c) = P(g) = 0.5; P(c, g) = 0.4 (majority) or 0.1 (minority): w = 0.25 / 0.4 = 0.625 and
    0.25 / 0.1 = 2.5; every cell then carries 0.25 of the mass."""
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    groups = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    weights = cell_weights(labels, groups)
    np.testing.assert_allclose(weights, [0.625] * 4 + [2.5, 2.5] + [0.625] * 4)
    for c in (0, 1):
        for g in (0, 1):
            mass = weights[(labels == c) & (groups == g)].sum() / weights.sum()
            assert mass == pytest.approx(0.25)


def test_reweighed_epoch_draws_balanced_cells_and_splits_ranks():
    from edgekd.train.distributed import Dist, rank_indices

    labels = np.repeat([0, 1], 500)
    groups = np.r_[np.repeat([0, 1], [450, 50]), np.repeat([1, 0], [450, 50])]
    weights = cell_weights(labels, groups)
    order = rank_indices(1000, epoch=3, seed=7, dist=Dist(), batch_size=32, weights=weights)
    assert len(order) == 1000
    minority = np.mean(groups[order] != labels)  # drawn from the two minority cells
    assert 0.44 < minority < 0.56  # 0.10 without reweighing
    again = rank_indices(1000, epoch=3, seed=7, dist=Dist(), batch_size=32, weights=weights)
    np.testing.assert_array_equal(order, again)
    never = rank_indices(
        1000, epoch=0, seed=0, dist=Dist(), batch_size=32, weights=(groups == 0).astype(float)
    )
    assert set(groups[never]) == {0}
    shares = [
        rank_indices(1000, epoch=3, seed=7, dist=Dist(rank=r, world_size=2), batch_size=32, weights=weights)
        for r in (0, 1)
    ]
    np.testing.assert_array_equal(np.sort(np.r_[shares[0], shares[1]]), np.sort(order))


def test_reweigh_recipe_wraps_the_objective_and_the_loop_draws_by_it(tmp_path):
    """``debias.reweigh`` alone or with the adversary; the loop's batches follow the weights."""
    from edgekd.data import load_data
    from edgekd.models import create_model
    from edgekd.stages import Stage
    from edgekd.train import fit

    both = with_debiasing(
        KDLoss(), parse_recipe({"name": "x", "debias": {"method": "adversarial", "reweigh": True}}).debias
    )
    assert isinstance(both, Reweighing) and isinstance(both.task, AdversarialDebiasing)
    assert both.uses_teacher
    inside = AdversarialDebiasing(Reweighing(CrossEntropy()))  # the wrappers nest either way
    np.testing.assert_allclose(
        inside.sample_weights(np.array([0, 0, 1]), np.array([0, 1, 1])), [2 / 3, 4 / 3, 2 / 3]
    )  # P(c)P(g)/P(c,g), n = 3
    alone = parse_recipe({"name": "x", "debias": {"reweigh": True}}).debias
    assert alone.active and isinstance(with_debiasing(CrossEntropy(), alone), Reweighing)

    class GroupZeroOnly(Reweighing):
        seen: list = []

        def sample_weights(self, labels, groups):
            return (groups == 0).astype(float)

        def forward(self, logits, batch):
            self.seen.append(batch.groups.clone())
            return super().forward(logits, batch)

    recipe = parse_recipe(
        {
            "name": "draws",
            "seed": 0,
            "data": {"image_size": 32, "num_classes": 2, "train_size": 320, "val_size": 32, "test_size": 16},
            "student": {"arch": "test_efficientnet", "epochs": 1, "batch_size": 32},
        }
    )
    data = load_data(recipe.data, seed=0)
    objective = GroupZeroOnly(CrossEntropy())
    stage = Stage(tmp_path, "student", {})
    stage.start()
    fit(
        create_model(recipe.student, 2, key="student"),
        objective,
        data,
        recipe.student,
        stage,
        seed=0,
        log=lambda m: None,
    )
    assert len(objective.seen) == 10 and set(torch.cat(objective.seen).tolist()) == {0}
