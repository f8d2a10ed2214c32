"""Stop training that diverged: a NaN or infinite loss is one line naming the stage, the epoch
and the term that went non-finite, never a build that ships a NaN model.

A loss turns non-finite for a few reasons the user can act on: weights that blew up (a learning
rate or weight decay too large; the network's outputs are then non-finite too), a teacher whose
logits are, or one term of the objective (the labels' cross-entropy, the distillation term, an
adversary's). :func:`nonfinite_term` tells them apart on the batch that failed, after the fact,
so a finite step costs nothing but reading the loss the loop reads anyway.
"""

from __future__ import annotations

import math

import torch

from edgekd.errors import EdgeKDError
from edgekd.train.objective import Batch, Objective, label_cross_entropy

__all__ = ["nonfinite_term", "check_loss", "check_record"]


def _finite(tensor: torch.Tensor | None) -> bool:
    return tensor is None or bool(torch.isfinite(tensor.detach()).all())


def _objective_name(objective: Objective) -> str:
    names = []
    while objective is not None:
        names.append(type(objective).__name__)
        objective = getattr(objective, "task", None)
    return " around ".join(names)


def nonfinite_term(objective: Objective, logits: torch.Tensor, batch: Batch, model: torch.nn.Module) -> str:
    """Which part of a step's loss is not finite, in words."""
    if not _finite(logits):
        broken = not all(_finite(p) for p in model.parameters())
        return "the network's outputs (logits)" + (
            "; its weights are no longer finite (too large a learning rate or weight decay?)"
            if broken
            else ""
        )
    if not _finite(batch.features):
        return "the network's pooled features"
    if not _finite(batch.teacher_logits) or not _finite(batch.teacher_features):
        return "the teacher's outputs"
    with torch.no_grad():
        if not _finite(label_cross_entropy(logits.detach(), batch.labels)):
            return "the cross-entropy on the labels"
    if not all(_finite(p) for p in objective.parameters()):
        return f"the parameters of the objective {_objective_name(objective)}"
    return f"the objective's own term ({_objective_name(objective)}: distillation or debiasing)"


def check_loss(
    value: float, *, stage: str, epoch: int, step: int, steps: int, term: str | None = None
) -> None:
    """One line when ``value`` (a step's or an epoch's loss) is NaN or infinite."""
    if math.isfinite(value):
        return
    where = f"epoch {epoch}" + (f", step {step} of {steps}" if step else "")
    raise EdgeKDError(
        f"{stage}: the training loss is {value} at {where}"
        + (f"; not finite: {term}" if term else "")
        + "; training stopped and nothing is shipped (lower the learning rate or "
        "weight decay, or check the data)"
    )


def check_record(record: dict, *, stage: str, epoch: int) -> None:
    """One line when a number of an epoch's record (losses, validation metrics) is not finite."""
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise EdgeKDError(
                f"{stage}: {key} is {value} after epoch {epoch}; training stopped and "
                f"nothing is shipped (lower the learning rate or weight decay, or check "
                f"the data)"
            )
