"""Training objectives. Teacher, baseline and student run the same loop and differ only here.

Every objective is an ``nn.Module`` called as ``objective(logits, batch)`` and returning a scalar
loss. ``uses_teacher`` tells the loop to put the frozen teacher's logits on the batch first; any
parameters an objective owns are trained together with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.registry import Registry

__all__ = ["Batch", "Objective", "CrossEntropy", "KDLoss", "OBJECTIVES", "kd_loss"]


@dataclass
class Batch:
    """What the loop hands an objective: inputs, labels, groups and (for KD) teacher logits."""

    images: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor
    teacher_logits: torch.Tensor | None = None


class Objective(nn.Module):
    """The common interface: ``forward(logits, batch) -> loss``."""

    uses_teacher: bool = False

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


OBJECTIVES: Registry[type[Objective]] = Registry("distillation method")


class CrossEntropy(Objective):
    """Plain cross-entropy on the labels: the teacher and the non-distilled baseline."""

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits, batch.labels)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Soft-target term of Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network" (2015): ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    The ``T^2`` keeps the gradient's scale independent of the temperature.
    """
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)


@OBJECTIVES.register("kd")
class KDLoss(Objective):
    """Classic KD (Hinton et al. 2015)::

        L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

    with the KL divergence averaged over the batch (``batchmean``).
    """

    uses_teacher = True

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha

    @classmethod
    def from_config(cls, cfg) -> KDLoss:
        return cls(temperature=cfg.temperature, alpha=cfg.alpha)

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert batch.teacher_logits is not None, "KD needs the teacher's logits on the batch"
        soft = kd_loss(logits, batch.teacher_logits, self.temperature)
        hard = F.cross_entropy(logits, batch.labels)
        return self.alpha * soft + (1.0 - self.alpha) * hard
