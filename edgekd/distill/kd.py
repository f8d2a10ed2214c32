"""Classic knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", 2015): ``distill.method: kd``.

The student learns the teacher's softened class probabilities beside the labels::

    L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The soft-target term (:func:`kd_loss`, per sample :func:`kd_loss_per_sample`) is also the KD
part of ``ctkd``, ``kdpp``, ``rkd`` and ``adaptive``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distill.configs import KDConfig
from edgekd.distill.registry import register_method
from edgekd.train.objective import Batch, Objective, label_cross_entropy

__all__ = ["KDConfig", "KDLoss", "kd_loss", "kd_loss_per_sample"]


def kd_loss_per_sample(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))`` for each sample, shape ``(B,)``, in
    float32 whatever the logits' precision."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return kl * (t * t)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """Soft-target term of Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network" (2015): ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    The ``T^2`` keeps the gradient's scale independent of the temperature. ``temperature`` may
    be a tensor (CTKD learns it).
    """
    return kd_loss_per_sample(student_logits, teacher_logits, temperature).mean()


@register_method(KDConfig)
class KDLoss(Objective):
    """Classic KD (Hinton et al. 2015)::

        L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

    with the KL divergence averaged over the batch (``batchmean``) and ``CE`` the (optionally
    label-smoothed) cross-entropy of :func:`~edgekd.train.objective.label_cross_entropy`.
    """

    uses_teacher = True

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert batch.teacher_logits is not None, "KD needs the teacher's logits on the batch"
        soft = kd_loss(logits, batch.teacher_logits, self.temperature)
        hard = label_cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        return self.alpha * soft + (1.0 - self.alpha) * hard
