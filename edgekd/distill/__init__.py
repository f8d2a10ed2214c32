"""Distillation methods, picked by name from ``distill.method`` (a registry, as timm picks models).

=========  ==========================================================  ====================
method     what the student learns from the teacher                    module
=========  ==========================================================  ====================
kd         softened class probabilities (Hinton et al. 2015)           :mod:`.losses`
rkd        distances and angles between embeddings (Park et al. 2019)  :mod:`.rkd`
ctkd       KD with an adversarially learned temperature (Li et al.     :mod:`.ctkd`
           2023)
kdpp       KD + embedding norm and direction (Wang et al. 2023)        :mod:`.kdpp`
adaptive   KD weighted per subgroup by the teacher's reliability       :mod:`.adaptive`
           (Lukasik et al. 2021)
=========  ==========================================================  ====================
"""

from __future__ import annotations

from edgekd.distill import adaptive, ctkd, kdpp, rkd  # noqa: F401  (register the methods)
from edgekd.distill.losses import OBJECTIVES, Batch, CrossEntropy, KDLoss, Objective, kd_loss
from edgekd.distill.teacher_outputs import TeacherOutputs

__all__ = ["OBJECTIVES", "Batch", "CrossEntropy", "KDLoss", "Objective", "TeacherOutputs", "kd_loss",
           "build_objective"]


def build_objective(cfg) -> Objective:
    """The student's objective for a recipe's ``distill`` section."""
    return OBJECTIVES.get(cfg.method, key="distill.method").from_config(cfg)
