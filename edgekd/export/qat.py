"""Quantization-aware fine-tuning: teach the student to survive the INT8 file it ships as.

Post-training quantization rounds every weight and every activation of the exported graph to 8
bits; on some students that flips half of the predictions. Quantization-aware
training (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018; Krishnamoorthi, arXiv:1806.08342) simulates that
rounding in the forward pass and lets the weights adapt to it; the straight-through estimator
passes the gradient through the rounding (zero outside the clipping range).

What is simulated is what onnxruntime's static QDQ quantization will do to the exported graph
(:func:`edgekd.export.int8.quantize_int8`), so that the fine-tuned weights fit the file that is
then calibrated and written the usual way:

* weights: per output channel, symmetric int8 in [-127, 127], scale ``max|w| / 127`` (the same
  rounding also holds after BatchNorm is folded into the convolution: folding scales each output
  channel, and a per-channel symmetric scale absorbs that exactly);
* activations: one range per tensor, the min and max over the calibration images (onnxruntime's
  MinMax calibration), at the model input and at every op output the QDQ file quantizes
  (convolutions after BatchNorm folding, activations, element-wise adds and multiplies, means,
  pooling, the classifier); ``uint8`` with a zero point for the CPU form,
  ``scale = (max - min) / 255``; symmetric ``int8`` for the TensorRT form, ``scale = max|x| / 127``.
  The ranges are re-measured on the calibration images every ``refresh_every`` steps, as the
  weights move.

The objective is the student's own predictions: ``KL(softmax(z_fp32) || softmax(z_int8))`` at
temperature 1 on the training images, where ``z_fp32`` are the frozen fp32 student's logits, since
what the card holds the file to is its agreement with that student. The images come from the
training split, a pass at a time, drawn evenly over the (class, group) cells; a generated source
draws fresh ones each pass, since fresh images and more steps kept more predictions than
repeating one set (and mixup or a squared-error match of the logits did not help).
BatchNorm statistics stay frozen (eval mode), as they will be folded. The fine-tuned float
weights are returned; they are exported and quantized like any student, and only the INT8 file
carries them.
"""

from __future__ import annotations

import copy
import math
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from edgekd.data.rows import batches, take
from edgekd.data.splits import Split, cell_weights
from edgekd.errors import EdgeKDError
from edgekd.models.tensors import to_input

__all__ = [
    "ActivationQuantizer",
    "WeightQuantizer",
    "insert_quantizers",
    "quantization_aware_finetune",
    "FineTuningCost",
    "probe_fine_tuning",
    "format_minutes",
]

_QUANTIZED_MODULES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.SiLU,
    nn.ReLU,
    nn.ReLU6,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.GELU,
    nn.Tanh,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
)
_QUANTIZED_FUNCTIONS = {
    operator.add,
    operator.mul,
    operator.iadd,
    operator.imul,
    torch.add,
    torch.mul,
    torch.cat,
    torch.sigmoid,
    torch.mean,
    F.batch_norm,
    F.silu,
    F.relu,
    F.relu6,
    F.hardswish,
    F.hardsigmoid,
    F.gelu,
    F.adaptive_avg_pool2d,
    F.avg_pool2d,
    F.max_pool2d,
    F.linear,
    F.conv2d,
}
_QUANTIZED_METHODS = {"add", "mul", "mean", "sigmoid", "add_", "mul_"}
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class WeightQuantizer(nn.Module):
    """Per-output-channel symmetric int8 fake quantization of a weight (a parametrization):
    ``w_q = clamp(round(w / s), -127, 127) * s`` with ``s = max|w_c| / 127`` per channel ``c``."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        absmax = weight.detach().abs().flatten(1).amax(1).clamp_min(1e-12)
        scale = (absmax / 127.0).float()
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, -127, 127)


class ActivationQuantizer(nn.Module):
    """Fake quantization of one activation tensor with the range onnxruntime's MinMax calibration
    would give it. While ``observing`` it passes ``x`` through and widens ``[low, high]`` to
    cover it; otherwise it rounds ``x`` to the 8-bit grid of that range (straight-through
    gradient inside it, zero outside)."""

    def __init__(self, symmetric: bool) -> None:
        super().__init__()
        self.symmetric = symmetric
        self.observing = True
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))

    def reset(self) -> None:
        self.low.fill_(float("inf"))
        self.high.fill_(float("-inf"))

    def qparams(self) -> tuple[float, int, int, int]:
        """``(scale, zero_point, qmin, qmax)`` as onnxruntime computes them for this range: the
        range always holds 0; symmetric int8 is ``[-127, 127]`` with zero point 0, asymmetric
        uint8 ``[0, 255]``."""
        low, high = min(float(self.low), 0.0), max(float(self.high), 0.0)
        if self.symmetric:
            absmax = max(-low, high)
            return (absmax / 127.0 if absmax > 0 else 1.0), 0, -127, 127
        if high == low:
            return 1.0, 0, 0, 255
        scale = (high - low) / 255.0
        return scale, int(np.clip(round(-low / scale), 0, 255)), 0, 255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            with torch.no_grad():
                self.low.copy_(torch.minimum(self.low, x.detach().min().float()))
                self.high.copy_(torch.maximum(self.high, x.detach().max().float()))
            return x
        scale, zero_point, qmin, qmax = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)


def _quantized_output(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "placeholder":
        return True
    if node.op == "call_module":
        return isinstance(modules[node.target], _QUANTIZED_MODULES)
    if node.op == "call_function":
        return node.target in _QUANTIZED_FUNCTIONS
    if node.op == "call_method":
        return node.target in _QUANTIZED_METHODS
    return False


def _inspects_only(node: torch.fx.Node) -> bool:
    """A use that reads a tensor's shape, not its values (timm's ``_assert(x.ndim == 4)``)."""
    return (node.op == "call_function" and node.target is getattr) or (
        node.op == "call_method" and node.target in ("size", "dim")
    )


def _feeds_only_batch_norm(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    """A convolution whose output only a BatchNorm reads: folded together, they have one output."""
    users = [u for u in node.users if not _inspects_only(u)]
    return bool(users) and all(
        (u.op == "call_function" and u.target is F.batch_norm)
        or (u.op == "call_module" and isinstance(modules.get(u.target), _BATCH_NORMS))
        for u in users
    )


def insert_quantizers(
    model: nn.Module, *, symmetric: bool
) -> tuple[torch.fx.GraphModule, list[ActivationQuantizer]]:
    """``model`` (eval mode) traced by ``torch.fx`` with an :class:`ActivationQuantizer` after the
    input and every op output the QDQ file quantizes, and a :class:`WeightQuantizer` on every
    convolution and linear weight. The traced module shares its parameters with ``model``."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(
            module, "weight"
        ):
            parametrize.register_parametrization(module, "weight", WeightQuantizer())
    try:
        traced = torch.fx.symbolic_trace(model.eval())
    except Exception as err:  # torch.fx raises many kinds for untraceable Python
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EdgeKDError(
            f"export.int8.qat: {type(model).__name__} cannot be traced by torch.fx "
            f"({first}); set export.int8.qat: off"
        ) from None
    modules = dict(traced.named_modules())
    quantizers: list[ActivationQuantizer] = []
    for node in list(traced.graph.nodes):
        if not _quantized_output(node, modules) or _feeds_only_batch_norm(node, modules):
            continue
        name = f"activation_quantizer_{len(quantizers)}"
        quantizer = ActivationQuantizer(symmetric)
        traced.add_submodule(name, quantizer)
        quantizers.append(quantizer)
        with traced.graph.inserting_after(node):
            quantized = traced.graph.call_module(name, (node,))
        node.replace_all_uses_with(quantized, delete_user_cb=lambda user, q=quantized: user is not q)
    traced.recompile()
    return traced, quantizers


def matching_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(target) || softmax(logits))`` at temperature 1, batch mean."""
    return F.kl_div(F.log_softmax(logits, dim=1), F.softmax(target, dim=1), reduction="batchmean")


@torch.no_grad()
def _observe(
    traced: nn.Module,
    quantizers: list[ActivationQuantizer],
    images: np.ndarray,
    mean,
    std,
    *,
    batch_size: int,
    device=None,
) -> None:
    """Re-measure every activation range on ``images`` (float forward, no rounding)."""
    for q in quantizers:
        q.reset()
        q.observing = True
    traced.eval()
    for pixels in batches(images, batch_size):
        traced(to_input(pixels, mean, std, device))
    for q in quantizers:
        q.observing = False


def format_minutes(seconds: float) -> str:
    """``"14 min"``, ``"1 min 05 s"``, ``"40 s"``: a duration as the progress lines say it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{round(seconds / 60)} min"


@dataclass(frozen=True)
class FineTuningCost:
    """What one run of :func:`quantization_aware_finetune` costs here, measured by
    :func:`probe_fine_tuning`: the copy and trace before the first step, one re-measurement of
    the activation ranges, one step."""

    setup_seconds: float
    refresh_seconds: float
    step_seconds: float

    def minutes(self, *, steps: int, refresh_every: int = 50) -> float:
        """Estimated minutes of one run of ``steps`` steps: ``(setup + steps * step +
        ceil(steps / refresh_every) * refresh) / 60``."""
        return (
            self.setup_seconds
            + steps * self.step_seconds
            + math.ceil(steps / refresh_every) * self.refresh_seconds
        ) / 60.0


def probe_fine_tuning(
    student: nn.Module,
    train_for_pass: Callable[[int], Split],
    calibration_images: np.ndarray,
    mean,
    std,
    *,
    symmetric: bool,
    probe_steps: int = 5,
    batch_size: int = 32,
) -> FineTuningCost:
    """Time :func:`quantization_aware_finetune` on ``probe_steps`` steps after one warm-up step
    (the first step allocates; its time is left out) and return the cost of each part; the copy
    it tunes is thrown away and ``student`` is untouched. A step costs the median of the timed
    ones: on a shared machine one step another process stalled would otherwise price them all
    many times over. The estimate is a
    snapshot of the machine's load, not a promise."""
    clock: dict = {}
    quantization_aware_finetune(
        student,
        train_for_pass,
        calibration_images,
        mean,
        std,
        symmetric=symmetric,
        steps=probe_steps + 1,
        batch_size=batch_size,
        clock=clock,
    )
    steps = clock["steps"][1:] or clock["steps"]
    return FineTuningCost(
        setup_seconds=clock["setup"],
        refresh_seconds=clock["refresh"][0],
        step_seconds=float(np.median(steps)),
    )


def quantization_aware_finetune(
    student: nn.Module,
    train_for_pass: Callable[[int], Split],
    calibration_images: np.ndarray,
    mean,
    std,
    *,
    symmetric: bool,
    steps: int = 1200,
    lr: float = 5e-4,
    batch_size: int = 32,
    refresh_every: int = 50,
    seed: int = 0,
    label: str = "",
    progress_seconds: float = 10.0,
    clock: dict | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> nn.Module:
    """A copy of ``student`` fine-tuned for ``steps`` steps under simulated INT8 (see the module
    docstring) to keep ``student``'s own predictions on training images; activation ranges are
    measured on ``calibration_images``, the images the INT8 file is then calibrated on.

    ``train_for_pass(k)`` is the training split of the ``k``-th pass over the data, one pass
    being ``len(split) / batch_size`` steps: the build passes ``DataSplits.train_for_epoch``, so
    a generated source brings fresh images each pass and a file source the same ones. Each
    batch draws its images with probability proportional to
    :func:`~edgekd.data.splits.cell_weights`: on a biased training split the minority (class,
    group) cells, where a balanced test split finds the flips, come as often as there.

    Progress goes to ``log`` every ``refresh_every`` steps and whenever ``progress_seconds``
    passed since the last line, with the time left at the pace so far (``label`` names the file
    being tuned for). A loss that is not finite stops the run in one line naming the step.
    ``clock``, when given, receives the seconds of the setup, of each range re-measurement
    (``refresh``) and of each step (:func:`probe_fine_tuning`).

    Returns the fine-tuned float model (eval mode, on the student's device); ``student`` is left
    untouched. The fp32 targets are computed batch by batch (a large split is never read whole).
    """
    started = time.perf_counter()
    timings: dict = {"refresh": [], "steps": []} if clock is None else clock
    timings.update(refresh=[], steps=[])
    student = student.eval()
    device = next(student.parameters()).device
    model = copy.deepcopy(student).eval()
    traced, quantizers = insert_quantizers(model, symmetric=symmetric)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    rng = np.random.default_rng(seed)
    pass_index, pass_end = -1, 0
    timings["setup"] = time.perf_counter() - started
    loop_started = last_line = time.perf_counter()
    for step in range(steps):
        tick = time.perf_counter()
        if step == pass_end:  # the next pass: its split and its draw weights
            pass_index += 1
            split = train_for_pass(pass_index)
            pass_end = step + max(1, -(-len(split) // batch_size))
            p = cell_weights(split.labels, split.groups)
            p = p / p.sum()
        if step % refresh_every == 0:
            _observe(traced, quantizers, calibration_images, mean, std, batch_size=128, device=device)
            timings["refresh"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
        # sorted: a memory-mapped split reads in order
        index = np.sort(rng.choice(len(split), size=min(batch_size, len(split)), p=p, replace=True))
        x = to_input(take(split.images, index), mean, std, device)  # read from the file
        with torch.no_grad():
            target = student(x).float()  # the fp32 student's own logits
        logits = traced(x)
        loss = matching_loss(logits.float(), target)
        value = loss.item()
        if not math.isfinite(value):
            raise EdgeKDError(
                f"export.int8.qat: the INT8-aware fine-tuning loss is {value} at step {step + 1} of "
                f"{steps}{label and f' ({label})'}; fine-tuning stopped and nothing is shipped (lower "
                f"export.int8.qat_lr, check the student's outputs, or set export.int8.qat: off)"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        now = time.perf_counter()
        timings["steps"].append(now - tick)
        if (step + 1) % refresh_every == 0 or step + 1 == steps or now - last_line >= progress_seconds:
            last_line = now
            agree = float((logits.argmax(1) == target.argmax(1)).float().mean())
            elapsed = now - started
            left = (now - loop_started) / (step + 1) * (steps - step - 1)
            log(
                f"export: INT8-aware fine-tuning{label and f' ({label})'} step {step + 1}/{steps}: "
                f"KL {value:.4f}, batch agreement {agree:.3f}; {format_minutes(elapsed)} elapsed"
                + (f", about {format_minutes(left)} left" if step + 1 < steps else "")
            )
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    return model.eval()
