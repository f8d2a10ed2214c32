"""KD++: the norm-and-direction (ND) loss of Wang, Li, Zhang, Zhang & Zhao, "Improving Knowledge
Distillation via Regularizing Feature Norm and Direction" (2023).

The student's pooled feature ``s_i`` is mapped by a trained projection ``P`` (BatchNorm1d +
Linear, 1280 -> 1536 for B0 -> B3) into the teacher's space and pushed to point along the
teacher's class-mean embedding of its label while growing its norm::

    L_nd = mean_i [ 1 - <P(s_i), c_{y_i} / ||c_{y_i}||> / max(||P(s_i)||, ||t_i||) ]
    L    = CE(s, y) + min(1, e / (warmup_share * E)) * T^2 * KL(softmax(t / T) || softmax(s / T))
           + nd_weight * L_nd

``c_y`` is the mean teacher feature of class ``y`` over the training split, computed once
before training (from the first epoch's split when the source draws fresh images per epoch);
``t_i`` is the teacher's feature of the same image; ``e`` is the 1-based epoch and ``E`` the
student's epochs. The paper warms the KD term up over 20 of 200+ epochs; a share of the epochs
keeps that shape in a 6-epoch build, where a count of 20 would never let the weight pass 0.3.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.configs import KDPPConfig
from edgekd.distill.kd import kd_loss
from edgekd.distill.registry import register_method
from edgekd.train.objective import Batch, Objective, label_cross_entropy

__all__ = ["KDPPLoss", "nd_loss", "class_means", "warmup_weight"]


def warmup_weight(epoch: int, epochs: int, share: float) -> float:
    """KD weight of 0-based ``epoch``: ``min(1, (epoch + 1) / (share * epochs))``, 1 when
    ``share`` is 0 (no warm-up)."""
    span = share * epochs
    return min(1.0, (epoch + 1) / span) if span > 0 else 1.0


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean feature per class, ``(num_classes, D)``; a class without samples gets zeros."""
    means = np.zeros((num_classes, features.shape[1]), dtype=np.float64)
    for c in range(num_classes):
        rows = features[labels == c]
        if len(rows):
            means[c] = rows.astype(np.float64).mean(0)
    return means.astype(np.float32)


def nd_loss(
    projected: torch.Tensor, teacher_features: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor
) -> torch.Tensor:
    """``mean_i [1 - <p_i, c_{y_i}/||c_{y_i}||> / max(||p_i||, ||t_i||)]`` (see module doc)."""
    direction = F.normalize(centres[labels], p=2, dim=1)
    along = (projected * direction).sum(dim=1)
    norm = torch.maximum(projected.norm(dim=1), teacher_features.norm(dim=1)).clamp_min(1e-12)
    return (1.0 - along / norm).mean()


@register_method(KDPPConfig)
class KDPPLoss(Objective):
    """CE + warmed-up KD + ND loss with a trained projection (see module doc)."""

    uses_teacher = True
    uses_teacher_features = True

    def __init__(
        self,
        *,
        temperature: float = 4.0,
        warmup_share: float = 0.3,
        nd_weight: float = 2.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.warmup_share = warmup_share
        self.nd_weight = nd_weight
        self.kd_weight = 0.0
        self.projection: nn.Module | None = None
        self.register_buffer("centres", torch.zeros(0))
        self.label_smoothing = label_smoothing

    def build(self, student_features: int, teacher_features: int) -> None:
        """Create the projection ``student_features -> teacher_features``."""
        self.projection = nn.Sequential(
            nn.BatchNorm1d(student_features), nn.Linear(student_features, teacher_features)
        )

    def prepare(self, *, teacher_outputs, student_features: int, data) -> None:
        split = data.train_for_epoch(0)
        _, features = teacher_outputs.for_split(split, key="epoch-0")
        self.centres = torch.from_numpy(class_means(features, split.labels, data.num_classes))
        self.build(student_features, features.shape[1])

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.kd_weight = warmup_weight(epoch, epochs, self.warmup_share)

    def epoch_metrics(self) -> dict:
        return {"kd_weight": self.kd_weight}

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert self.projection is not None, "KDPPLoss.prepare() builds the projection first"
        loss = label_cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        if self.kd_weight:
            loss = loss + self.kd_weight * kd_loss(logits, batch.teacher_logits, self.temperature)
        projected = self.projection(batch.features)
        return loss + self.nd_weight * nd_loss(projected, batch.teacher_features, batch.labels, self.centres)
