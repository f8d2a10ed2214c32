"""Distillation methods, picked by name from ``distill.method`` (a registry, as timm picks models)."""

from __future__ import annotations

from edgekd.distill.losses import OBJECTIVES, Batch, CrossEntropy, KDLoss, Objective, kd_loss

__all__ = ["OBJECTIVES", "Batch", "CrossEntropy", "KDLoss", "Objective", "kd_loss", "build_objective"]


def build_objective(cfg) -> Objective:
    """The student's objective for a recipe's ``distill`` section."""
    return OBJECTIVES.get(cfg.method, key="distill.method").from_config(cfg)
