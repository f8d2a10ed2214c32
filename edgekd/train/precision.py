"""Mixed precision of a training stage (``teacher`` / ``student``: ``precision``).

``auto`` picks per device:

* CUDA GPUs with native bfloat16 (compute capability 8.0 and up: A100, A10, L4, RTX 30xx/40xx,
  H100): ``bf16`` autocast. bfloat16 has float32's exponent range, so no loss scaling.
* older CUDA GPUs (V100, T4, RTX 20xx): ``fp16`` autocast with a gradient scaler
  (Micikevicius et al., "Mixed Precision Training", 2018): the loss is multiplied by a scale
  before the backward pass so small gradients survive float16, and the gradients are divided by
  it again (``unscale_``) before they are clipped or applied; a step whose gradients overflowed
  is skipped and the scale halved.
* the CPU: ``fp32``. bf16 autocast is slower than fp32 on CPUs without native bfloat16
  (``benchmarks/bench_train_step.py`` times both), so nothing changes there unless a recipe asks.

Only the network's forward pass runs under autocast; the objective (every loss, the adversary,
CTKD's temperature, KD++'s projection) gets float32 logits and features and runs in float32.
The weights, the optimiser's state and the EMA stay float32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from edgekd.errors import EdgeKDError

__all__ = ["Precision", "resolve_precision"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved setting: ``fp32``, ``bf16`` or ``fp16`` on a device type (``cpu``, ``cuda``)."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of a forward pass: autocast to ``dtype``, or nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled for fp16 only (otherwise every call passes through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def _native_bf16(device: torch.device) -> bool:
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8


def resolve_precision(setting: str, device: torch.device | str, *, key: str) -> Precision:
    """The precision a stage trains in on ``device`` (see the module doc).

    ``key`` names the recipe key in errors (``student.precision``).
    """
    device = torch.device(device)
    kind = device.type
    if setting == "auto":
        if kind != "cuda":
            return Precision("fp32", kind)
        return Precision("bf16" if _native_bf16(device) else "fp16", kind)
    if setting not in _DTYPES:
        raise EdgeKDError(f"{key}: {setting!r} is not a precision (auto, fp32, bf16, fp16)")
    if setting != "fp32" and kind not in ("cpu", "cuda"):
        raise EdgeKDError(
            f"{key}: {setting} autocast runs on CUDA GPUs and the CPU, not on {kind}; use fp32 or auto"
        )
    if setting == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise EdgeKDError(
            f"{key}: bf16 needs a GPU with bfloat16 (compute capability 8.0 and "
            f"up); {name} has none, so use fp16 (with a gradient scaler) or auto"
        )
    return Precision(setting, kind)
