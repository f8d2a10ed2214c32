"""Adversarial debiasing (Zhang, Lemoine & Mitchell, "Mitigating Unwanted Biases with Adversarial
Learning", AIES 2018), trained through gradient reversal (Ganin & Lempitsky 2015).

An adversary ``A`` (a small MLP) tries to predict the protected group ``g`` from what the model
outputs. The model is trained to do its task *and* to defeat the adversary::

    adversary:  min_A  L_adv = CE(A(z), g)
    model:      min_f  L_task - lambda * L_adv

with ``z = softmax(logits)`` (or the pooled penultimate features, ``input: features``). For
demographic parity (``criterion: demographic_parity``) the adversary sees ``z`` alone: the
output must carry no information about the group. For equalized odds
(``criterion: equalized_odds``) it also sees the true label one-hot, so only information about
the group *beyond the label* is penalised.

Both updates come from one backward pass: ``z`` reaches the adversary through a gradient
reversal layer of strength ``lambda``, so the adversary receives ``+grad L_adv`` and the model
``-lambda * grad L_adv``. The gradient really reaches the student: nothing on the path is
detached (the public code of the study this tool follows detached it, so its adversary never
changed the student). We use reversal rather than Zhang et al.'s projected update (which also
removes the component of the task gradient along the adversary's); reversal is what the study
describes and composes with every distillation loss.

``warmup_epochs`` trains the adversary alone first (strength 0); ``schedule: linear`` then ramps
``lambda`` from 0 to its value over ``ramp_epochs``.

How much the adversary learned is judged against the accuracy its criterion leaves it without any
leak (:func:`adversary_reference`), not against 1/groups: under a biased split the label predicts
the group, and an equalized-odds adversary is given the label.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.models.reversal import grad_reverse
from edgekd.train.objective import Batch, Objective, ObjectiveWrapper

__all__ = ["Adversary", "AdversarialDebiasing", "lambda_at", "adversary_reference"]


def adversary_reference(cell_counts: np.ndarray, criterion: str) -> float | None:
    """The accuracy an adversary reaches when the model's output leaks nothing it may not leak.

    ``cell_counts[c, g]`` counts the images of class ``c`` and group ``g`` the adversary saw.

    * ``demographic_parity``: the output says nothing about the group, so the best guess is the
      largest group: ``max_g n_g / N``.
    * ``equalized_odds``: the adversary is given the label and the output may say nothing
      beyond it, so the best guess is the majority group of each class:
      ``sum_c max_g n_{c,g} / N``.

    Under a 0.9 bias with two groups both are about 0.9 for equalized odds, while the
    demographic-parity reference is the group balance (about 0.5): an adversary at 0.89 leaks
    almost nothing under the first and a great deal under the second.
    """
    counts = np.asarray(cell_counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return None
    if criterion == "equalized_odds":
        return float(counts.max(axis=1).sum() / total)
    return float(counts.sum(axis=0).max() / total)


class Adversary(nn.Module):
    """An MLP from the model's output (and, for equalized odds, the label) to group logits."""

    def __init__(self, in_features: int, num_groups: int, hidden: tuple[int, ...] = (64,)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_groups))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def lambda_at(epoch: int, *, weight: float, warmup_epochs: int, schedule: str, ramp_epochs: int) -> float:
    """The reversal strength of 0-based ``epoch``: 0 during warm-up, then constant or a linear
    ramp ``weight * min(1, (epoch - warmup + 1) / ramp_epochs)``."""
    if epoch < warmup_epochs:
        return 0.0
    if schedule == "linear" and ramp_epochs > 0:
        return weight * min(1.0, (epoch - warmup_epochs + 1) / ramp_epochs)
    return weight


class AdversarialDebiasing(ObjectiveWrapper):
    """Wraps any objective (CE, KD, RKD, ...) with an adversary on the protected group."""

    def __init__(
        self,
        task: Objective,
        *,
        weight: float = 0.5,
        criterion: str = "demographic_parity",
        source: str = "probabilities",
        hidden: tuple[int, ...] = (64,),
        warmup_epochs: int = 0,
        schedule: str = "constant",
        ramp_epochs: int = 0,
    ) -> None:
        super().__init__(task)
        self.weight = weight
        self.criterion = criterion
        self.source = source
        self.hidden = tuple(hidden)
        self.warmup_epochs, self.schedule, self.ramp_epochs = warmup_epochs, schedule, ramp_epochs
        self.strength = 0.0
        self.adversary: Adversary | None = None
        self.num_classes = 0
        self.num_groups = 0
        self._reset_counts()

    def build(self, *, num_classes: int, num_groups: int, feature_width: int) -> None:
        self.num_classes, self.num_groups = num_classes, num_groups
        self._reset_counts()
        width = num_classes if self.source == "probabilities" else feature_width
        if self.criterion == "equalized_odds":
            width += num_classes
        self.adversary = Adversary(width, num_groups, self.hidden)

    def prepare(self, *, teacher_outputs, student_features: int, data) -> None:
        super().prepare(teacher_outputs=teacher_outputs, student_features=student_features, data=data)
        self.build(
            num_classes=data.num_classes, num_groups=len(data.group_names), feature_width=student_features
        )

    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        self.strength = lambda_at(
            epoch,
            weight=self.weight,
            warmup_epochs=self.warmup_epochs,
            schedule=self.schedule,
            ramp_epochs=self.ramp_epochs,
        )
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._correct = 0
        self._cells = torch.zeros(max(self.num_classes, 1) * max(self.num_groups, 1), dtype=torch.int64)

    def adversary_input(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        z = F.softmax(logits, dim=1) if self.source == "probabilities" else batch.features
        z = grad_reverse(z, self.strength)
        if self.criterion == "equalized_odds":
            z = torch.cat([z, F.one_hot(batch.labels, self.num_classes).to(z.dtype)], dim=1)
        return z

    def forward(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert self.adversary is not None, "AdversarialDebiasing.prepare() builds the adversary"
        task_loss = self.task(logits, batch)
        group_logits = self.adversary(self.adversary_input(logits, batch))
        adversary_loss = F.cross_entropy(group_logits, batch.groups)
        with torch.no_grad():
            self._correct += int((group_logits.argmax(1) == batch.groups).sum())
            cells = (batch.labels * self.num_groups + batch.groups).cpu()
            self._cells += torch.bincount(cells, minlength=self._cells.numel())
        # One backward pass: the adversary descends L_adv, the model (through the reversal)
        # descends -lambda * L_adv, i.e. L_task - lambda * L_adv in effect.
        return task_loss + adversary_loss

    def epoch_metrics(self) -> dict:
        """Adversary accuracy over the epoch and :func:`adversary_reference` of the images it saw,
        summed over all ranks under torchrun."""
        counts = [self._correct, *self._cells.tolist()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            on = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
            total = torch.tensor(counts, dtype=torch.float64, device=on)
            torch.distributed.all_reduce(total)
            counts = total.cpu().tolist()
        correct, cells = counts[0], np.asarray(counts[1:]).reshape(-1, max(self.num_groups, 1))
        seen = cells.sum()
        return {
            **self.task.epoch_metrics(),
            "adversary_top1": correct / seen if seen else None,
            "adversary_reference": adversary_reference(cells, self.criterion),
            "debias_lambda": self.strength,
        }

    def summary(self) -> dict:
        return {
            **self.task.summary(),
            "debias": {
                "method": "adversarial",
                "lambda": self.weight,
                "criterion": self.criterion,
                "input": self.source,
            },
        }
