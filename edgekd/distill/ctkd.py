"""Curriculum temperature KD (Li, Li, Yang, Cheng, Liu & Yang, "Curriculum Temperature for
Knowledge Distillation", AAAI 2023).

The temperature is learned, adversarially: a global ``tau = t_min + t_range * sigmoid(theta)``
is fed to the KD loss through a gradient reversal layer of strength ``lambda``, so one backward
pass makes the student *minimise* the KD loss and the temperature *maximise* it (the student
faces ever harder soft targets). ``lambda`` follows a cosine curriculum from 0 to 1 over the
first ``curriculum_share`` of the student's ``E`` epochs::

    E_c = curriculum_share * E
    lambda(e) = (1 - cos(pi * min(e, E_c) / E_c)) / 2
    L = alpha * tau^2 * KL(softmax(t / tau) || softmax(s / tau)) + (1 - alpha) * CE(s, y)

``e`` counts finished epochs, so the first epoch trains with ``lambda = 0`` (a fixed
temperature). The paper ramps over 10 of 240 epochs; a share keeps the curriculum's shape
whatever the recipe's epochs. The temperature of every epoch is logged in the stage metrics.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgekd.distill.configs import CTKDConfig
from edgekd.distill.kd import kd_loss
from edgekd.distill.registry import register_method
from edgekd.models.reversal import grad_reverse
from edgekd.train.objective import Batch, Objective, label_cross_entropy

__all__ = ["CTKDLoss", "cosine_curriculum"]


def cosine_curriculum(epoch: int, curriculum_epochs: float) -> float:
    """``(1 - cos(pi * min(epoch, E) / E)) / 2``: 0 at epoch 0, 1 from epoch ``E`` on (``E``
    may be fractional)."""
    if curriculum_epochs <= 0:
        return 1.0
    progress = min(epoch, curriculum_epochs) / curriculum_epochs
    return (1.0 - math.cos(math.pi * progress)) / 2.0


@register_method(CTKDConfig)
class CTKDLoss(Objective):
    """KD with a learnable global temperature trained through gradient reversal (see module doc)."""

    uses_teacher = True

    def __init__(
        self,
        *,
        t_min: float = 1.0,
        t_range: float = 20.0,
        initial_temperature: float = 4.0,
        alpha: float = 0.5,
        curriculum_share: float = 0.5,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not t_min < initial_temperature < t_min + t_range:
            raise ValueError("initial_temperature must lie strictly inside (t_min, t_min + t_range)")
        self.t_min, self.t_range = t_min, t_range
        self.alpha = alpha
        self.curriculum_share = curriculum_share
        share = (initial_temperature - t_min) / t_range
        self.theta = nn.Parameter(torch.tensor(math.log(share / (1.0 - share))))
        self.strength = 0.0
        self.label_smoothing = label_smoothing

    @property
    def temperature(self) -> torch.Tensor:
        return self.t_min + self.t_range * torch.sigmoid(self.theta)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.strength = cosine_curriculum(epoch, self.curriculum_share * epochs)

    def epoch_metrics(self) -> dict:
        return {"temperature": float(self.temperature.detach()), "reversal_strength": self.strength}

    def summary(self) -> dict:
        return {"final_temperature": float(self.temperature.detach())}

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        tau = grad_reverse(self.temperature, self.strength)
        soft = kd_loss(logits, batch.teacher_logits, tau)
        hard = label_cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        return self.alpha * soft + (1.0 - self.alpha) * hard
