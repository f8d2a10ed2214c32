"""Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation",
CVPR 2019).

RKD transfers the *structure* of the teacher's embedding space rather than its outputs, so the
student and teacher features may have different widths (1280 for B0, 1536 for B3). Both terms
work on the pooled penultimate features ``f`` of a batch:

* distance: ``psi_D(i, j) = ||f_i - f_j|| / mu`` with ``mu`` the mean non-zero pairwise distance
  in the batch; ``L_D = mean_{i != j} huber(psi_D^s(i, j), psi_D^t(i, j))``;
* angle: ``e_ij = (f_i - f_j) / ||f_i - f_j||``, ``psi_A(i, j, k) = <e_ij, e_kj>``;
  ``L_A = mean_{i, j, k} huber(psi_A^s, psi_A^t)``.

Total: ``CE + w_D * L_D + w_A * L_A (+ kd_weight * KD)`` with the paper's ``w_D = 25``,
``w_A = 50`` and ``huber`` the smooth L1 loss (beta 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distill.configs import RKDConfig
from edgekd.distill.kd import kd_loss
from edgekd.distill.registry import register_method
from edgekd.train.objective import Batch, Objective, label_cross_entropy

__all__ = ["RKDLoss", "rkd_distance_loss", "rkd_angle_loss", "normalised_distances"]

# The angle term looks at B x B difference vectors of width D at once; this caps the bytes of
# one chunk of them (about 64 MB), so batch 128 with 1536-d features stays small.
_ANGLE_CHUNK_BYTES = 64 << 20


def normalised_distances(features: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances divided by their mean over the non-zero ones, ``(B, B)``."""
    dist = torch.cdist(features.float(), features.float(), compute_mode="donot_use_mm_for_euclid_dist")
    positive = dist > 0
    mean = dist[positive].mean() if positive.any() else dist.new_tensor(1.0)
    return dist / mean


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the normalised pairwise distances of student and teacher features."""
    with torch.no_grad():
        target = normalised_distances(teacher)
    pred = normalised_distances(student)
    off_diagonal = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
    return F.smooth_l1_loss(pred[off_diagonal], target[off_diagonal])


def _angles(features: torch.Tensor, anchors: slice) -> torch.Tensor:
    """``<e_ij, e_kj>`` for anchors ``j`` in the slice: shape ``(len(anchors), B, B)``."""
    diff = features[None, :, :] - features[anchors, None, :]  # (J, B, D): f_i - f_j
    unit = F.normalize(diff, p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2))


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the triplet angle cosines of student and teacher features.

    Computed in chunks of anchors so that memory stays bounded (see ``_ANGLE_CHUNK_BYTES``);
    the result equals the mean over all ``B^3`` triplets.
    """
    b = len(student)
    width = max(student.shape[1], teacher.shape[1])
    chunk = max(1, _ANGLE_CHUNK_BYTES // max(1, b * width * 4))
    total = student.new_zeros(())
    for start in range(0, b, chunk):
        anchors = slice(start, min(b, start + chunk))
        with torch.no_grad():
            target = _angles(teacher.float(), anchors)
        pred = _angles(student.float(), anchors)
        total = total + F.smooth_l1_loss(pred, target, reduction="sum")
    return total / (b**3)


@register_method(RKDConfig)
class RKDLoss(Objective):
    """``CE + distance_weight * L_D + angle_weight * L_A + kd_weight * KD`` (see module doc)."""

    uses_teacher = True
    uses_teacher_features = True

    def __init__(
        self,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
        *,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        loss = label_cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        if self.distance_weight:
            loss = loss + self.distance_weight * rkd_distance_loss(batch.features, batch.teacher_features)
        if self.angle_weight:
            loss = loss + self.angle_weight * rkd_angle_loss(batch.features, batch.teacher_features)
        if self.kd_weight:
            loss = loss + self.kd_weight * kd_loss(logits, batch.teacher_logits, self.temperature)
        return loss
