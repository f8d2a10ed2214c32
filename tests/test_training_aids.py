"""The training aids of ``teacher``/``student``: gradient clipping, the EMA of the weights,
mixed precision (``precision``), channels-last input and label smoothing (``label_smoothing``):
what the loop and the losses do with them, and their bad values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.distill import OBJECTIVES
from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe
from edgekd.train.objective import Objective, label_cross_entropy

DATA = {"image_size": 32, "num_classes": 2, "train_size": 320, "val_size": 32, "test_size": 16}


def _fit(tmp_path, objective=None, data=DATA, **student):
    from edgekd.data import load_data
    from edgekd.distill import CrossEntropy
    from edgekd.models import create_model
    from edgekd.stages import Stage
    from edgekd.train import fit

    recipe = parse_recipe(
        {
            "name": "aids",
            "seed": 0,
            "data": data,
            "student": {"arch": "test_efficientnet", "epochs": 1, "batch_size": 32, **student},
        }
    )
    data = load_data(recipe.data, seed=0)
    torch.manual_seed(0)
    model = create_model(recipe.student, 2, key="student")
    stage = Stage(tmp_path, "student", {})
    stage.start()
    fit(
        model,
        objective if objective is not None else CrossEntropy(),
        data,
        recipe.student,
        stage,
        seed=0,
        log=lambda m: None,
    )
    return model, stage


def test_every_step_clips_the_gradient_norm_to_the_recipes_value(tmp_path, monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        calls.append(max_norm)
        return real(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _fit(tmp_path / "clipped", grad_clip_norm=0.5)
    assert calls == [0.5] * 10  # 320 images / batch 32
    calls.clear()
    _fit(tmp_path / "plain")
    assert calls == []


def test_with_ema_the_averaged_weights_are_validated_kept_and_shipped(tmp_path):
    model, stage = _fit(tmp_path, ema_decay=0.5)
    last = torch.load(stage.path("last.pt"), weights_only=True)
    best = torch.load(stage.path("best.pt"), weights_only=True)["model"]
    shipped = model.state_dict()
    for key, value in last["ema"].items():
        assert torch.equal(best[key], value) and torch.equal(shipped[key], value), key
    assert any(
        not torch.equal(last["model"][k], last["ema"][k])
        for k in last["ema"]
        if last["ema"][k].is_floating_point()
    )
    _, plain = _fit(tmp_path / "plain")
    assert "ema" not in torch.load(plain.path("last.pt"), weights_only=True)


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("ema_decay", 1.5, "student.ema_decay = 1.5"),
        ("grad_clip_norm", -1, "student.grad_clip_norm = -1"),
    ],
)
def test_bad_training_aid_values_are_named(key, value, needle):
    with pytest.raises(EdgeKDError, match=needle):
        parse_recipe({"name": "x", "student": {"arch": "test_efficientnet", "epochs": 1, key: value}})


# ------------------------------------------------------------------------------ mixed precision
class _Spy(Objective):
    """Cross-entropy that records, per call, the dtypes it gets and whether autocast was on;
    with a trained scalar of its own (as CTKD's temperature) to check the scaler unscales it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.calls: list[tuple[torch.dtype, bool, torch.dtype]] = []

    def forward(self, logits, batch):
        self.calls.append((logits.dtype, torch.is_autocast_enabled("cpu"), batch.features.dtype))
        return label_cross_entropy(logits * self.scale, batch.labels)


def _forward_dtypes(model) -> list[tuple[bool, torch.dtype]]:
    """(autocast on, classifier output dtype) of every training forward pass of ``model``."""
    seen = []
    model.get_classifier().register_forward_hook(
        lambda module, args, out: (
            seen.append((torch.is_autocast_enabled("cpu"), out.dtype)) if module.training else None
        )
    )
    return seen


@pytest.fixture
def seen(monkeypatch) -> list:
    """Per model the loop creates, its :func:`_forward_dtypes` record."""
    from edgekd.models import create_model as real_create

    records: list = []

    def create(*args, **kwargs):
        model = real_create(*args, **kwargs)
        records.append(_forward_dtypes(model))
        return model

    monkeypatch.setattr("edgekd.models.create_model", create)
    return records


def test_auto_precision_on_the_cpu_is_fp32_with_no_autocast(tmp_path, seen):
    from edgekd.train.precision import resolve_precision

    assert resolve_precision("auto", "cpu", key="student.precision").name == "fp32"
    objective = _Spy()
    _, stage = _fit(tmp_path, objective)
    assert seen[0] == [(False, torch.float32)] * 10
    assert objective.calls == [(torch.float32, False, torch.float32)] * 10
    import json

    assert json.loads(stage.path("metrics.jsonl").read_text().splitlines()[0])["precision"] == "fp32"


def test_bf16_on_the_cpu_autocasts_the_network_and_keeps_the_loss_in_fp32(tmp_path, seen):
    objective = _Spy()
    model, stage = _fit(tmp_path, objective, precision="bf16")
    assert seen[0] == [(True, torch.bfloat16)] * 10  # the network ran under bf16 autocast
    # the objective got float32 logits and features, outside autocast
    assert objective.calls == [(torch.float32, False, torch.float32)] * 10
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    last = torch.load(stage.path("last.pt"), weights_only=True)
    assert last["history"][0]["precision"] == "bf16" and "scaler" not in last
    assert math.isfinite(last["history"][0]["train_loss"])


def test_fp16_unscales_every_gradient_before_clipping_and_trains_the_objective(tmp_path, monkeypatch):
    """fp16 + GradScaler (on the CPU here): each step unscales, then clips the true gradients
    (the model's and the objective's own parameter); overflowing steps are skipped."""
    events: list = []
    real_unscale, real_clip = torch.amp.GradScaler.unscale_, torch.nn.utils.clip_grad_norm_
    scales: list = []

    def unscale(self, optimizer):
        events.append("unscale")
        scales.append(self.get_scale())
        return real_unscale(self, optimizer)

    objective = _Spy()

    def clip(parameters, max_norm, *args, **kwargs):
        events.append("clip")
        parameters = list(parameters)
        assert any(p is objective.scale for p in parameters)
        norm = real_clip(parameters, max_norm, *args, **kwargs)
        grads.append((float(norm), float(objective.scale.grad)))
        return norm

    grads: list = []
    monkeypatch.setattr(torch.amp.GradScaler, "unscale_", unscale)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    # fp16 kernels are slow on the CPU: 5 steps of 32
    _, stage = _fit(
        tmp_path, objective, data={**DATA, "train_size": 160}, precision="fp16", grad_clip_norm=1.0
    )
    assert events == ["unscale", "clip"] * 5
    finite = [(norm, grad, scale) for (norm, grad), scale in zip(grads, scales) if math.isfinite(norm)]
    assert len(finite) >= 3  # a step that overflowed is skipped (and the scale halved)
    for norm, grad, scale in finite:
        # scaled gradients would be `scale` (>= 512) times larger: these are the true ones
        assert scale >= 512 and norm < scale / 50 and abs(grad) < scale / 50
    assert float(objective.scale.detach()) != 1.0  # the objective's parameter was stepped
    last = torch.load(stage.path("last.pt"), weights_only=True)
    assert last["history"][0]["precision"] == "fp16"
    # the scaler's state (scale, steps since the last overflow) is kept for a resume
    assert last["scaler"]["scale"] == scales[-1] and last["scaler"]["_growth_tracker"] > 0


def test_auto_precision_on_gpus_and_bf16_where_a_gpu_has_none(monkeypatch):
    from types import SimpleNamespace

    from edgekd.train.precision import resolve_precision

    monkeypatch.setattr(torch.version, "hip", None)
    for major, expected in ((7, "fp16"), (8, "bf16"), (9, "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d, m=major: SimpleNamespace(major=m))
        assert resolve_precision("auto", "cuda:0", key="student.precision").name == expected
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    with pytest.raises(
        EdgeKDError,
        match=r"^teacher.precision: bf16 needs a GPU with bfloat16 .*"
        r"Tesla V100-SXM2-16GB has none, so use fp16",
    ):
        resolve_precision("bf16", "cuda:0", key="teacher.precision")
    assert resolve_precision("fp16", "cuda:0", key="teacher.precision").name == "fp16"
    cpu = {name: resolve_precision(name, "cpu", key="teacher.precision") for name in ("bf16", "fp16")}
    assert cpu["fp16"].scaler().is_enabled() and not cpu["bf16"].scaler().is_enabled()


def test_training_batches_are_channels_last_like_the_model():
    from edgekd.models.tensors import to_input

    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    x = to_input(images, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), device="cpu")
    assert x.shape == (4, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x[1, 2], (torch.from_numpy(images[1, :, :, 2]).float() / 255 - 0.5) / 0.25)


# ------------------------------------------------------------------------------ label smoothing
# Two classes, logits (0, ln 3): p = (1/4, 3/4). Label 0 with smoothing 0.1: target
# (0.95, 0.05), so CE = -(0.95 ln 1/4 + 0.05 ln 3/4) = 0.95 ln 4 + 0.05 ln 4/3.
LOGITS = torch.tensor([[0.0, math.log(3.0)]])
SMOOTHED_CE = 0.95 * math.log(4.0) + 0.05 * math.log(4.0 / 3.0)


def _batch(**extra):
    from edgekd.distill import Batch

    return Batch(images=torch.zeros(1), labels=torch.tensor([0]), groups=torch.tensor([0]), **extra)


def test_plain_cross_entropy_with_label_smoothing_hand_worked():
    from edgekd.distill import CrossEntropy

    assert SMOOTHED_CE == pytest.approx(1.331363, abs=1e-6)
    assert CrossEntropy(label_smoothing=0.1)(LOGITS, _batch()).item() == pytest.approx(SMOOTHED_CE, abs=1e-6)
    assert CrossEntropy()(LOGITS, _batch()).item() == pytest.approx(math.log(4.0), abs=1e-6)


def test_the_label_term_of_kd_and_rkd_is_smoothed_hand_worked():
    # KD, T = 1, alpha 0.5, teacher (ln 3, 0): KL((3/4, 1/4) || (1/4, 3/4)) = 0.5 ln 3
    kd = OBJECTIVES.get("kd")(temperature=1.0, alpha=0.5, label_smoothing=0.1)
    batch = _batch(teacher_logits=torch.tensor([[math.log(3.0), 0.0]]))
    assert kd(LOGITS, batch).item() == pytest.approx(0.5 * 0.5 * math.log(3.0) + 0.5 * SMOOTHED_CE, abs=1e-6)
    # RKD with its relational terms off is its label term alone
    rkd = OBJECTIVES.get("rkd")(distance_weight=0.0, angle_weight=0.0, label_smoothing=0.1)
    assert rkd(
        LOGITS, _batch(features=torch.zeros(1, 4), teacher_features=torch.zeros(1, 4))
    ).item() == pytest.approx(SMOOTHED_CE, abs=1e-6)


class _Split:
    def __init__(self, labels, groups):
        self.labels, self.groups = labels, groups


class _Data:
    """What the methods' prepare() reads: splits' labels and groups, names and class count."""

    num_classes, class_names, group_names = 3, ["a", "b", "c"], ["g0", "g1"]

    def __init__(self, labels, groups):
        self.val = self.split = _Split(labels, groups)

    def train_for_epoch(self, epoch):
        return self.split


class _TeacherOutputs:
    def __init__(self, logits, features):
        self.logits, self.features = logits, features

    def for_split(self, split, key):
        return self.logits, self.features


# How much of each method's loss is its label term once warmed up (alpha 0.5 where it has one)
LABEL_WEIGHT = {"kd": 0.5, "ctkd": 0.5, "adaptive": 0.5, "rkd": 1.0, "kdpp": 1.0}


@pytest.mark.parametrize("method", sorted(OBJECTIVES.names()))
def test_every_distillation_method_honours_label_smoothing(method):
    from edgekd.distill import build_objective

    assert method in LABEL_WEIGHT, f"add {method}'s label-term weight to LABEL_WEIGHT"
    torch.manual_seed(0)
    labels, groups = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 0, 1, 0, 1])
    teacher = np.eye(3, dtype=np.float32)[labels] * 4.0  # a teacher right everywhere
    features = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    distill = parse_recipe({"name": "x", "distill": {"method": method}}).distill
    logits = torch.randn(6, 3)
    batch = _batch(
        features=torch.randn(6, 4),
        teacher_logits=torch.from_numpy(teacher),
        teacher_features=torch.from_numpy(features),
    )
    batch.labels, batch.groups = torch.from_numpy(labels), torch.from_numpy(groups)
    losses = {}
    for smoothing in (0.0, 0.1):
        torch.manual_seed(1)
        objective = build_objective(distill, label_smoothing=smoothing)
        objective.prepare(
            teacher_outputs=_TeacherOutputs(teacher, features), student_features=4, data=_Data(labels, groups)
        )
        objective.start_epoch(9, 10)  # warm-ups and curricula done
        losses[smoothing] = objective.eval()(logits, batch).item()
    ce = {s: label_cross_entropy(logits, batch.labels, label_smoothing=s).item() for s in (0.0, 0.1)}
    assert ce[0.1] != pytest.approx(ce[0.0], abs=1e-3)
    assert losses[0.1] - losses[0.0] == pytest.approx(LABEL_WEIGHT[method] * (ce[0.1] - ce[0.0]), abs=1e-5)


def test_the_build_routes_each_networks_label_smoothing_to_its_objectives(tmp_path, monkeypatch):
    """Teacher: its own; baseline (inside its debiasing wrappers) and student: the student's."""
    from edgekd.context import BuildContext
    from edgekd.data import load_data
    from edgekd.train import stage as train_stages
    from edgekd.train.distributed import SINGLE

    recipe = parse_recipe(
        {
            "name": "ls",
            "data": DATA,
            "teacher": {"arch": "test_efficientnet", "epochs": 1, "label_smoothing": 0.2},
            "student": {"arch": "test_efficientnet", "epochs": 1, "label_smoothing": 0.1},
            "distill": {"method": "ctkd"},
            "debias": {"method": "adversarial", "reweigh": True, "apply_to": ["student", "baseline"]},
        }
    )
    seen = {}

    def train_stage(stage, cfg, objective, data, **kwargs):
        seen[stage.name] = objective
        return train_stages.Trained(None, stage, cfg, "trained", np.zeros((0, 2)), [])

    monkeypatch.setattr(train_stages, "train_stage", train_stage)
    train_stages.train_models(
        recipe,
        load_data(recipe.data, seed=0),
        run_dir=tmp_path,
        shared_dir=tmp_path,
        seed=0,
        ctx=BuildContext(log=lambda m: None, dist=SINGLE),
    )

    def innermost(objective):
        while hasattr(objective, "task"):
            objective = objective.task
        return objective

    assert {
        name: (type(innermost(o)).__name__, innermost(o).label_smoothing) for name, o in seen.items()
    } == {"teacher": ("CrossEntropy", 0.2), "baseline": ("CrossEntropy", 0.1), "student": ("CTKDLoss", 0.1)}
    assert type(seen["student"]).__name__ == "Reweighing"  # the wrappers are still around it


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("precision", "fp8", "student.precision"),
        ("label_smoothing", 1.0, "student.label_smoothing = 1.0"),
        ("label_smoothing", -0.1, "student.label_smoothing = -0.1"),
    ],
)
def test_bad_precision_and_label_smoothing_are_one_line(key, value, needle):
    with pytest.raises(EdgeKDError) as err:
        parse_recipe({"name": "x", "student": {"arch": "test_efficientnet", "epochs": 1, key: value}})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_run_of_four_steps_with_a_quarter_warm_up_trains(tmp_path):
    """torch's OneCycleLR divides by (warm-up steps - 1): 4 steps x 0.25 warm-up was a
    ZeroDivisionError traceback; the loop now nudges the warm-up off that one value."""
    _, stage = _fit(tmp_path, data={**DATA, "train_size": 128}, warmup_fraction=0.25)
    history = torch.load(stage.path("last.pt"), weights_only=True)["history"]
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
