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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.models.reversal import grad_reverse
from edgekd.train.objective import Batch, Objective

__all__ = ["Adversary", "AdversarialDebiasing", "lambda_at"]


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


def lambda_at(epoch: int, *, weight: float, warmup_epochs: int, schedule: str,
              ramp_epochs: int) -> float:
    """The reversal strength of 0-based ``epoch``: 0 during warm-up, then constant or a linear
    ramp ``weight * min(1, (epoch - warmup + 1) / ramp_epochs)``."""
    if epoch < warmup_epochs:
        return 0.0
    if schedule == "linear" and ramp_epochs > 0:
        return weight * min(1.0, (epoch - warmup_epochs + 1) / ramp_epochs)
    return weight


class AdversarialDebiasing(Objective):
    """Wraps any objective (CE, KD, RKD, ...) with an adversary on the protected group."""

    def __init__(self, task: Objective, *, weight: float = 0.5, criterion: str = "demographic_parity",
                 source: str = "probabilities", hidden: tuple[int, ...] = (64,),
                 warmup_epochs: int = 0, schedule: str = "constant", ramp_epochs: int = 0) -> None:
        super().__init__()
        self.task = task
        self.weight = weight
        self.criterion = criterion
        self.source = source
        self.hidden = tuple(hidden)
        self.warmup_epochs, self.schedule, self.ramp_epochs = warmup_epochs, schedule, ramp_epochs
        self.strength = 0.0
        self.adversary: Adversary | None = None
        self.num_classes = 0
        self._reset_counts()

    # The wrapped objective decides what the loop must provide.
    @property
    def uses_teacher(self) -> bool:  # type: ignore[override]
        return self.task.uses_teacher

    @property
    def uses_teacher_features(self) -> bool:  # type: ignore[override]
        return self.task.uses_teacher_features

    def build(self, *, num_classes: int, num_groups: int, feature_width: int) -> None:
        self.num_classes = num_classes
        width = num_classes if self.source == "probabilities" else feature_width
        if self.criterion == "equalized_odds":
            width += num_classes
        self.adversary = Adversary(width, num_groups, self.hidden)

    def prepare(self, *, teacher_outputs, student_features: int, data) -> None:
        self.task.prepare(teacher_outputs=teacher_outputs, student_features=student_features,
                          data=data)
        self.build(num_classes=data.num_classes, num_groups=len(data.group_names),
                   feature_width=student_features)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.task.start_epoch(epoch, epochs)
        self.strength = lambda_at(epoch, weight=self.weight, warmup_epochs=self.warmup_epochs,
                                  schedule=self.schedule, ramp_epochs=self.ramp_epochs)
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._correct = 0
        self._seen = 0
        self._group_counts: dict[int, int] = {}

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
            self._seen += len(batch.groups)
            for g, n in zip(*torch.unique(batch.groups, return_counts=True)):
                self._group_counts[int(g)] = self._group_counts.get(int(g), 0) + int(n)
        # One backward pass: the adversary descends L_adv, the model (through the reversal)
        # descends -lambda * L_adv, i.e. L_task - lambda * L_adv in effect.
        return task_loss + adversary_loss

    def epoch_metrics(self) -> dict:
        """Adversary accuracy over the epoch and its chance level (the majority group's share),
        summed over all ranks under torchrun."""
        groups = self.adversary.net[-1].out_features if self.adversary is not None else 0
        counts = [self._correct, self._seen] + [self._group_counts.get(g, 0) for g in range(groups)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            on = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
            total = torch.tensor(counts, dtype=torch.float64, device=on)
            torch.distributed.all_reduce(total)
            counts = total.cpu().tolist()
        correct, seen, per_group = counts[0], counts[1], counts[2:]
        return {
            **self.task.epoch_metrics(),
            "adversary_top1": correct / seen if seen else None,
            "adversary_chance": max(per_group) / seen if seen and per_group else None,
            "debias_lambda": self.strength,
        }

    def summary(self) -> dict:
        return {**self.task.summary(), "debias": {"method": "adversarial", "lambda": self.weight,
                                                  "criterion": self.criterion, "input": self.source}}
