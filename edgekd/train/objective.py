"""What the one training loop asks of a training objective.

Teacher, baseline and student run the same loop (:func:`edgekd.train.fit`) and differ only by
their objective. Every objective is an ``nn.Module`` called as ``objective(logits, batch)`` and
returning a scalar loss. The loop reads a few class attributes to know what to put on the batch
first:

* ``uses_teacher``: the frozen teacher's logits (``batch.teacher_logits``);
* ``uses_teacher_features``: also the teacher's pooled penultimate features;

the student's own pooled features are always on the batch (``batch.features``). Parameters an
objective owns (CTKD's temperature, KD++'s projection) are trained with the model. Four hooks
let a method see more than one batch: :meth:`Objective.prepare` once before training (class
means, teacher reliability), :meth:`Objective.start_epoch` (curricula),
:meth:`Objective.sample_weights` (which images an epoch draws: reweighing) and
:meth:`Objective.epoch_metrics` (what goes into the stage's metrics log). The distillation
methods (:mod:`edgekd.distill`) and the debiasing wrappers (:mod:`edgekd.debias`) build on this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from edgekd.train.teacher_outputs import TeacherOutputs

__all__ = ["Batch", "Objective", "ObjectiveWrapper", "CrossEntropy", "label_cross_entropy"]


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

    def prepare(self, *, teacher_outputs: TeacherOutputs | None, student_features: int, data) -> None:
        """Called once before training (and again before a resume restores the state)."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before epoch ``epoch`` (0-based) of ``epochs``."""

    def sample_weights(self, labels, groups):
        """How likely each of the epoch's images is to be drawn (``None``: every image once, in
        a shuffled order); reweighing (:mod:`edgekd.debias.reweighing`) overrides it."""
        return None

    def epoch_metrics(self) -> dict:
        """Extra numbers for the epoch's metrics record (e.g. CTKD's temperature)."""
        return {}

    def summary(self) -> dict:
        """What the card shows about the trained objective (e.g. adaptive KD's weights)."""
        return {}

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class ObjectiveWrapper(Objective):
    """An objective around another (``task``): every need and hook is the task's unless the
    wrapper overrides it. The debiasing wrappers (adversary, reweighing) build on it, so they
    nest in any order."""

    def __init__(self, task: Objective) -> None:
        super().__init__()
        self.task = task

    @property
    def uses_teacher(self) -> bool:  # type: ignore[override]
        return self.task.uses_teacher

    @property
    def uses_teacher_features(self) -> bool:  # type: ignore[override]
        return self.task.uses_teacher_features

    def prepare(self, *, teacher_outputs: TeacherOutputs | None, student_features: int, data) -> None:
        self.task.prepare(teacher_outputs=teacher_outputs, student_features=student_features, data=data)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.task.start_epoch(epoch, epochs)

    def sample_weights(self, labels, groups):
        return self.task.sample_weights(labels, groups)

    def epoch_metrics(self) -> dict:
        return self.task.epoch_metrics()

    def summary(self) -> dict:
        return self.task.summary()

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.task(logits, batch)


def label_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0, reduction: str = "mean"
) -> torch.Tensor:
    """The cross-entropy on the labels that every objective uses, in float32.

    With label smoothing ``eps`` (Szegedy et al., "Rethinking the Inception Architecture",
    2016) the target of a ``K``-class sample of class ``y`` is ``(1 - eps) * onehot(y) + eps / K``::

        CE_i = -(1 - eps) * log p_{i,y_i} - (eps / K) * sum_k log p_{i,k}

    The recipe's ``label_smoothing`` (per network) reaches this one function in the plain
    cross-entropy of teacher and baseline and in the label term of every distillation method,
    so baseline and distilled student are compared on the same targets.
    """
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction=reduction)


class CrossEntropy(Objective):
    """Plain cross-entropy on the labels (:func:`label_cross_entropy`): the teacher and the
    non-distilled baseline."""

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return label_cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
