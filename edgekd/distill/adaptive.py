"""Per-subgroup adaptive distillation, after Lukasik, Bhojanapalli, Menon & Kumar, "Teacher's
pet: understanding and mitigating biases in distillation" (2021).

Distillation hurts the subgroups where the teacher is wrong most: the student copies its
mistakes. Teacher's pet mixes teacher and one-hot labels with a weight per subgroup that is
lower where the teacher is less reliable. Here the teacher's accuracy ``acc_k`` on the
validation split is estimated per class, or per (class, protected group) cell, and::

    alpha_k = alpha * acc_k / max_j acc_j
    L = mean_i [ alpha_{k(i)} * T^2 * KL_i(softmax(t / T) || softmax(s / T))
                 + (1 - alpha_{k(i)}) * CE_i(s, y) ]

so the subgroup the teacher serves best keeps the full ``alpha`` and the others lean on the
labels in proportion to how much worse the teacher does there. A cell without validation
images takes its class's weight. The weights are written to the card.
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.distill.configs import AdaptiveConfig
from edgekd.distill.kd import kd_loss_per_sample
from edgekd.distill.registry import register_method
from edgekd.train.objective import Batch, Objective, label_cross_entropy

__all__ = ["AdaptiveKDLoss", "subgroup_weights"]


def subgroup_weights(
    pred: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    alpha: float,
    num_classes: int,
    num_groups: int,
    per: str,
) -> np.ndarray:
    """Mixing weights ``(num_classes, num_groups)``: ``alpha * acc / max acc`` (module doc).

    With ``per="class"`` every group of a class shares the class's weight.
    """
    correct = pred == labels
    class_acc = np.array(
        [correct[labels == c].mean() if (labels == c).any() else np.nan for c in range(num_classes)]
    )
    acc = np.repeat(class_acc[:, None], num_groups, axis=1)
    if per == "cell":
        for c in range(num_classes):
            for g in range(num_groups):
                cell = (labels == c) & (groups == g)
                if cell.any():
                    acc[c, g] = correct[cell].mean()
    best = np.nanmax(acc) if not np.all(np.isnan(acc)) else np.nan
    if not best or np.isnan(best):  # the teacher is never right: fall back to labels only
        return np.zeros((num_classes, num_groups))
    return np.nan_to_num(alpha * acc / best, nan=0.0)


@register_method(AdaptiveConfig)
class AdaptiveKDLoss(Objective):
    """KD whose teacher weight is lowered per class (or cell) where the teacher is unreliable."""

    uses_teacher = True

    def __init__(
        self, *, temperature: float = 4.0, alpha: float = 0.5, per: str = "cell", label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.per = per
        self.register_buffer("weights", torch.zeros(0, 0))
        self.class_names: list[str] = []
        self.group_names: list[str] = []
        self.label_smoothing = label_smoothing

    def prepare(self, *, teacher_outputs, student_features: int, data) -> None:
        logits, _ = teacher_outputs.for_split(data.val, key="val")
        weights = subgroup_weights(
            logits.argmax(1),
            data.val.labels,
            data.val.groups,
            alpha=self.alpha,
            num_classes=data.num_classes,
            num_groups=len(data.group_names),
            per=self.per,
        )
        self.weights = torch.from_numpy(weights).float()
        self.class_names, self.group_names = list(data.class_names), list(data.group_names)

    def summary(self) -> dict:
        w = self.weights.numpy()
        if self.per == "class":
            return {"per": "class", "alpha_by_class": dict(zip(self.class_names, w[:, 0].tolist()))}
        return {
            "per": "cell",
            "alpha_by_cell": {
                c: dict(zip(self.group_names, w[i].tolist())) for i, c in enumerate(self.class_names)
            },
        }

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        alpha = self.weights[batch.labels, batch.groups]
        soft = kd_loss_per_sample(logits, batch.teacher_logits, self.temperature)
        hard = label_cross_entropy(
            logits, batch.labels, label_smoothing=self.label_smoothing, reduction="none"
        )
        return (alpha * soft + (1.0 - alpha) * hard).mean()
