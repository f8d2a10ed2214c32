"""The recipe section of every distillation method (``distill.method: NAME``), torch-free.

The recipe is validated before anything heavy is imported, so a method's section lives here and
its loss in the method's own module (:mod:`.kd`, :mod:`.rkd`, :mod:`.ctkd`, :mod:`.kdpp`,
:mod:`.adaptive`), which registers the loss with ``@register_method(ItsConfig)``. A new method
adds its section here (or passes its own to :func:`~edgekd.distill.registry.register_method`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edgekd.distill.registry import METHOD_CONFIGS, DistillMethodConfig
from edgekd.registry import tag_of

__all__ = ["KDConfig", "RKDConfig", "CTKDConfig", "KDPPConfig", "AdaptiveConfig", "METHOD_CONFIGS"]


class KDConfig(DistillMethodConfig):
    """``distill.method: kd``: Hinton et al. (2015) soft-target distillation."""

    method: Literal["kd"] = "kd"
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="T: softens both distributions")
    # 0.5, not Hinton's 0.9: a teacher that leans on a shortcut (the quickstart's colour) passes
    # it on through soft targets (benchmarks/bench_quickstart_seeds.py --variant compares alphas).
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the KD term vs CE")


class RKDConfig(DistillMethodConfig):
    """``distill.method: rkd``: relational KD (Park et al. 2019) on pooled features."""

    method: Literal["rkd"] = "rkd"
    distance_weight: float = Field(25.0, ge=0.0, description="w_D of the distance loss (the paper's 25)")
    angle_weight: float = Field(50.0, ge=0.0, description="w_A of the angle loss (the paper's 50)")
    kd_weight: float = Field(0.0, ge=0.0, description="optional classic KD term")
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="for the optional KD term")


class CTKDConfig(DistillMethodConfig):
    """``distill.method: ctkd``: curriculum temperature KD (Li et al. 2023)."""

    method: Literal["ctkd"] = "ctkd"
    t_min: float = Field(1.0, gt=0.0, description="lowest learned temperature")
    t_range: float = Field(20.0, gt=0.0, description="temperature = t_min + t_range * sigmoid(theta)")
    initial_temperature: float = Field(4.0, gt=0.0, description="inside (t_min, t_min + t_range)")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="as kd's alpha")
    curriculum_share: float = Field(
        0.5, ge=0.0, le=1.0, description="share of the epochs over which lambda ramps 0 -> 1"
    )
    renamed_keys = {
        "curriculum_epochs": "curriculum_share, a share of the student's epochs in [0, 1] (e.g. 0.5)"
    }

    @model_validator(mode="after")
    def _initial_inside(self) -> CTKDConfig:
        if not self.t_min < self.initial_temperature < self.t_min + self.t_range:
            raise ValueError(
                f"initial_temperature {self.initial_temperature:g} must lie strictly "
                f"between t_min {self.t_min:g} and t_min + t_range "
                f"{self.t_min + self.t_range:g}"
            )
        return self


class KDPPConfig(DistillMethodConfig):
    """``distill.method: kdpp``: KD++ / ND loss (Wang et al. 2023)."""

    method: Literal["kdpp"] = "kdpp"
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="T of the KD term")
    warmup_share: float = Field(
        0.3, ge=0.0, le=1.0, description="KD weight = min(1, epoch / (share x epochs))"
    )
    nd_weight: float = Field(2.0, ge=0.0, description="weight of the norm-and-direction loss")
    renamed_keys = {"warmup_epochs": "warmup_share, a share of the student's epochs in [0, 1] (e.g. 0.3)"}


class AdaptiveConfig(DistillMethodConfig):
    """``distill.method: adaptive``: per-subgroup KD weights after "Teacher's pet" (2021)."""

    method: Literal["adaptive"] = "adaptive"
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="T of the KD term")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight where the teacher is best")
    per: Literal["class", "cell"] = Field("cell", description="(class, group) cell, or class")


for _config in (KDConfig, RKDConfig, CTKDConfig, KDPPConfig, AdaptiveConfig):
    METHOD_CONFIGS.add(tag_of(_config, "method"), _config)
