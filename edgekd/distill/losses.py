"""Training objectives. Teacher, baseline and student run the same loop and differ only here.

Every objective is an ``nn.Module`` called as ``objective(logits, batch)`` and returning a scalar
loss. The loop reads a few class attributes to know what to put on the batch first:

* ``uses_teacher``: the frozen teacher's logits (``batch.teacher_logits``);
* ``uses_teacher_features``: also the teacher's pooled penultimate features;

the student's own pooled features are always on the batch (``batch.features``). Parameters an
objective owns (CTKD's temperature, KD++'s projection) are trained with the model. Three hooks
let a method see more than one batch: :meth:`Objective.prepare` once before training (class
means, teacher reliability), :meth:`Objective.start_epoch` (curricula) and
:meth:`Objective.epoch_metrics` (what goes into the stage's metrics log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.registry import Registry

if TYPE_CHECKING:
    from edgekd.distill.teacher_outputs import TeacherOutputs

__all__ = ["Batch", "Objective", "CrossEntropy", "KDLoss", "OBJECTIVES", "kd_loss",
           "kd_loss_per_sample"]


@dataclass
class Batch:
    """What the loop hands an objective.

    ``features`` are the student's pooled penultimate features (the input of its classifier);
    ``teacher_logits`` / ``teacher_features`` are filled for objectives that use the teacher.
    """

    images: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor
    features: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    teacher_features: torch.Tensor | None = None


class Objective(nn.Module):
    """The common interface: ``forward(logits, batch) -> loss`` plus three optional hooks."""

    uses_teacher: bool = False
    uses_teacher_features: bool = False

    def prepare(self, *, teacher_outputs: TeacherOutputs | None, student_features: int,
                data) -> None:
        """Called once before training (and again before a resume restores the state)."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before epoch ``epoch`` (0-based) of ``epochs``."""

    def epoch_metrics(self) -> dict:
        """Extra numbers for the epoch's metrics record (e.g. CTKD's temperature)."""
        return {}

    def summary(self) -> dict:
        """What the card shows about the trained objective (e.g. adaptive KD's weights)."""
        return {}

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


OBJECTIVES: Registry[type[Objective]] = Registry("distillation method")


class CrossEntropy(Objective):
    """Plain cross-entropy on the labels: the teacher and the non-distilled baseline."""

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits, batch.labels)


def kd_loss_per_sample(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float | torch.Tensor) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))`` for each sample, shape ``(B,)``."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return kl * (t * t)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float | torch.Tensor) -> torch.Tensor:
    """Soft-target term of Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network" (2015): ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    The ``T^2`` keeps the gradient's scale independent of the temperature. ``temperature`` may
    be a tensor (CTKD learns it).
    """
    return kd_loss_per_sample(student_logits, teacher_logits, temperature).mean()


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
