"""Classic knowledge distillation (Hinton et al. 2015) and the method registry.

``distill.method: NAME`` picks a registered :class:`~edgekd.train.objective.Objective` class. A
method is one module: its recipe section (a :class:`DistillSettings` with ``method:
Literal[NAME]``) and its loss, registered together the way timm registers a model where it is
defined::

    class MyConfig(DistillSettings):
        method: Literal["mine"] = "mine"
        temperature: float = 4.0

    @register_method(MyConfig)
    class MyLoss(Objective):
        uses_teacher = True
        def __init__(self, *, temperature: float = 4.0, label_smoothing: float = 0.0): ...

The loss's keyword arguments are the section's keys (:func:`build_objective` passes them), plus
``label_smoothing`` (the student's): every method's cross-entropy on the labels goes through
:func:`~edgekd.train.objective.label_cross_entropy` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.config import Section
from edgekd.registry import Registry, tag_of
from edgekd.train.objective import Batch, Objective, label_cross_entropy

__all__ = ["DistillSettings", "KDConfig", "KDLoss", "OBJECTIVES", "register_method", "build_objective",
           "kd_loss", "kd_loss_per_sample"]

OBJECTIVES: Registry[type[Objective]] = Registry("distillation method")


class DistillSettings(Section):
    """What every ``distill`` section has besides its method's own keys."""

    cache_teacher: bool = Field(
        True, description="compute the teacher's outputs once per split and keep them on disk"
    )


def register_method(config: type[DistillSettings]) -> Callable[[type[Objective]], type[Objective]]:
    """Register the decorated objective class under the name ``config`` declares in ``method``."""

    def add(cls: type[Objective]) -> type[Objective]:
        cls.config = config
        OBJECTIVES.register(tag_of(config, "method"))(cls)
        return cls

    return add


def build_objective(cfg: DistillSettings, *, label_smoothing: float = 0.0) -> Objective:
    """The student's objective for a recipe's ``distill`` section: the registered class, called
    with the section's own keys and the student's ``label_smoothing``."""
    cls = OBJECTIVES.get(cfg.method, key="distill.method")
    return cls(**cfg.model_dump(exclude={"method", *DistillSettings.model_fields}),
               label_smoothing=label_smoothing)


def kd_loss_per_sample(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float | torch.Tensor) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))`` for each sample, shape ``(B,)``, in
    float32 whatever the logits' precision."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
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


class KDConfig(DistillSettings):
    """``distill.method: kd``: Hinton et al. (2015) soft-target distillation."""

    method: Literal["kd"] = "kd"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    # 0.5, not Hinton's 0.9: on the quickstart (3 seeds, README) a teacher that leans on the
    # colour shortcut passes it on through soft targets; 0.9 gave top-1 0.642 against 0.741.
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the KD term vs CE")


@register_method(KDConfig)
class KDLoss(Objective):
    """Classic KD (Hinton et al. 2015)::

        L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

    with the KL divergence averaged over the batch (``batchmean``) and ``CE`` the (optionally
    label-smoothed) cross-entropy of :func:`~edgekd.train.objective.label_cross_entropy`.
    """

    uses_teacher = True

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, *,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert batch.teacher_logits is not None, "KD needs the teacher's logits on the batch"
        soft = kd_loss(logits, batch.teacher_logits, self.temperature)
        hard = label_cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        return self.alpha * soft + (1.0 - self.alpha) * hard
