"""INT8-aware fine-tuning (edgekd.export.qat): the simulated rounding against hand-worked values,
where the quantizers go in the traced graph, and the fine-tuning moving a copy, not the student."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.data.splits import Split
from edgekd.export.qat import (
    ActivationQuantizer,
    WeightQuantizer,
    insert_quantizers,
    quantization_aware_finetune,
)


def _ranged(low: float, high: float, symmetric: bool) -> ActivationQuantizer:
    q = ActivationQuantizer(symmetric)
    q(torch.tensor([low, high]))  # observing: widens the range, passes x through
    q.observing = False
    return q


def test_activation_ranges_become_onnxruntimes_scale_and_zero_point():
    # uint8, range [-1, 3]: scale 4/255, zero point round(1 / (4/255)) = round(63.75) = 64
    scale, zero, qmin, qmax = _ranged(-1.0, 3.0, symmetric=False).qparams()
    assert scale == pytest.approx(4 / 255) and (zero, qmin, qmax) == (64, 0, 255)
    # symmetric int8: scale max|x| / 127, zero point 0, [-127, 127]
    scale, zero, qmin, qmax = _ranged(-1.0, 3.0, symmetric=True).qparams()
    assert scale == pytest.approx(3 / 127) and (zero, qmin, qmax) == (0, -127, 127)
    # the range always holds 0: [2, 6] is quantized as [0, 6]
    scale, zero, _, _ = _ranged(2.0, 6.0, symmetric=False).qparams()
    assert scale == pytest.approx(6 / 255) and zero == 0


def test_activation_rounding_hand_worked():
    q = _ranged(-1.0, 3.0, symmetric=True)  # step 3/127
    x = torch.tensor([0.05, 1.0, -2.0, 5.0])
    # 0.05/(3/127) = 2.117 -> 2; 1.0 -> 42.33 -> 42; -2.0 -> -84.67 -> -85; 5.0 clips at 127
    expected = torch.tensor([2, 42, -85, 127]) * (3 / 127)
    assert torch.allclose(q(x), expected.float(), atol=1e-6)
    x.requires_grad_(True)
    q(x).sum().backward()  # straight-through inside the range, zero where it clipped
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0]


def test_weights_round_per_output_channel_hand_worked():
    w = torch.tensor([[0.5, -1.0, 0.2], [2.0, 0.3, -0.01]])
    out = WeightQuantizer()(w)
    # row 0: step 1/127 -> 0.5*127 = 63.5 -> 64 (half to even), -127, 25.4 -> 25
    # row 1: step 2/127 -> 127, 19.05 -> 19, -0.635 -> -1
    expected = torch.tensor([[64 / 127, -1.0, 25 / 127], [2.0, 19 * 2 / 127, -2 / 127]])
    assert torch.allclose(out, expected, atol=1e-6)


def _tiny(seed: int = 0) -> nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("test_efficientnet", num_classes=3).eval()


def test_quantizers_sit_where_the_qdq_file_quantizes_and_observing_changes_nothing():
    model = _tiny()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    simulated = copy.deepcopy(model)
    traced, quantizers = insert_quantizers(simulated, symmetric=False)  # shares its weights
    inputs = {
        n.args[0].op if n.args[0].op == "placeholder" else n.args[0].name
        for n in traced.graph.nodes
        if n.op == "call_module" and n.target.startswith("activation_")
    }
    assert "placeholder" in inputs  # the model input
    for node in traced.graph.nodes:
        if node.op == "call_module" and isinstance(traced.get_submodule(node.target), nn.Conv2d):
            quantized = any(u.op == "call_module" and u.target.startswith("activation_") for u in node.users)
            feeds_bn = any(
                u.op == "call_function" and u.target is torch.nn.functional.batch_norm for u in node.users
            )
            assert quantized != feeds_bn, node.name  # folded into its BatchNorm, or quantized itself
    assert len(quantizers) == len(inputs)
    with_int8_weights = simulated(x)  # the copy itself: rounded weights, float activations
    assert not torch.equal(with_int8_weights, expected)
    assert torch.allclose(with_int8_weights, expected, atol=0.05)
    assert torch.equal(traced(x), with_int8_weights)  # observing: activations pass through
    for q in quantizers:
        q.observing = False
    assert not torch.equal(traced(x), with_int8_weights)  # rounding now


def test_fine_tuning_moves_a_copy_and_keeps_the_students_predictions(tmp_path):
    student = _tiny()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    labels, groups = np.arange(64) % 2, (np.arange(64) // 2) % 2
    passes: list[int] = []

    def train_for_pass(k: int) -> Split:  # a fresh half of the images each pass
        passes.append(k)
        half = slice(32 * (k % 2), 32 * (k % 2) + 32)
        return Split(images[half], labels[half], groups[half])

    messages: list[str] = []
    tuned = quantization_aware_finetune(
        student,
        train_for_pass,
        images[:32],
        (0.5,) * 3,
        (0.25,) * 3,
        symmetric=True,
        steps=5,
        batch_size=16,
        refresh_every=2,
        log=messages.append,
    )
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # untouched
    assert set(tuned.state_dict()) == set(before)  # no parametrization left behind
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    assert passes == [0, 1, 2]  # 32 images of batches of 16: a pass is 2 steps, 5 steps start 3
    # a line every refresh_every steps, and the last; each with the time so far and left
    steps = [m.split(" step ")[1].split(":")[0] for m in messages]
    assert {"2/5", "4/5", "5/5"} <= set(steps) and steps[-1] == "5/5"
    assert all("batch agreement" in m and " elapsed" in m for m in messages)
    assert all("left" in m for m in messages[:-1]) and "left" not in messages[-1]
    assert type(tuned) is type(student)  # exports like any student


def test_fine_tuning_progress_lines_come_by_time_too_and_the_probe_times_the_parts():
    from edgekd.export.qat import probe_fine_tuning

    student = _tiny()
    images = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    split = Split(images, np.arange(32) % 2, (np.arange(32) // 2) % 2)
    messages: list[str] = []
    quantization_aware_finetune(
        student,
        lambda k: split,
        images,
        (0.5,) * 3,
        (0.25,) * 3,
        symmetric=False,
        steps=3,
        batch_size=8,
        refresh_every=50,
        progress_seconds=0.0,
        label="model.int8.onnx",
        log=messages.append,
    )
    assert [m.split(": KL")[0] for m in messages] == [
        f"export: INT8-aware fine-tuning (model.int8.onnx) step {k}/3" for k in (1, 2, 3)
    ]
    assert "about" in messages[0] and "left" in messages[0]
    cost = probe_fine_tuning(
        student, lambda k: split, images, (0.5,) * 3, (0.25,) * 3, symmetric=True, probe_steps=2, batch_size=8
    )
    assert cost.step_seconds > 0 and cost.refresh_seconds > 0 and cost.setup_seconds > 0


def test_a_non_finite_fine_tuning_loss_stops_in_one_line_naming_the_step():
    from edgekd.errors import EdgeKDError

    student = _tiny()
    with torch.no_grad():
        student.get_classifier().bias.fill_(float("nan"))  # a student whose outputs are NaN
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    split = Split(images, np.arange(16) % 2, (np.arange(16) // 2) % 2)
    with pytest.raises(EdgeKDError) as err:
        quantization_aware_finetune(
            student,
            lambda k: split,
            images,
            (0.5,) * 3,
            (0.25,) * 3,
            symmetric=True,
            steps=5,
            batch_size=8,
            label="model.int8.trt.onnx",
        )
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "export.int8.qat: the INT8-aware fine-tuning loss is nan at step 1 of 5 "
        "(model.int8.trt.onnx); fine-tuning stopped"
    )
