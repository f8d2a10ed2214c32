"""Debiasing against the protected attribute, picked by ``debias.method`` (``none`` or
``adversarial``); it wraps whatever objective the stage trains with."""

from __future__ import annotations

from edgekd.debias.adversarial import AdversarialDebiasing, Adversary, lambda_at
from edgekd.distill.losses import Objective

__all__ = ["AdversarialDebiasing", "Adversary", "lambda_at", "with_debiasing"]


def with_debiasing(objective: Objective, cfg) -> Objective:
    """``objective`` wrapped by the recipe's ``debias`` section (unchanged for ``none``)."""
    if cfg is None or cfg.method == "none":
        return objective
    return AdversarialDebiasing(objective, weight=cfg.lambda_, criterion=cfg.criterion,
                                source=cfg.input, hidden=tuple(cfg.hidden),
                                warmup_epochs=cfg.warmup_epochs, schedule=cfg.schedule,
                                ramp_epochs=cfg.ramp_epochs)
