"""Distillation methods, picked by name from ``distill.method`` (a registry, as timm picks models).

=========  ==========================================================  ====================
method     what the student learns from the teacher                    module
=========  ==========================================================  ====================
kd         softened class probabilities (Hinton et al. 2015)           :mod:`.kd`
rkd        distances and angles between embeddings (Park et al. 2019)  :mod:`.rkd`
ctkd       KD with an adversarially learned temperature (Li et al.     :mod:`.ctkd`
           2023)
kdpp       KD + embedding norm and direction (Wang et al. 2023)        :mod:`.kdpp`
adaptive   KD weighted per subgroup by the teacher's reliability       :mod:`.adaptive`
           (Lukasik et al. 2021)
=========  ==========================================================  ====================

A method is one module defining its recipe section and its loss (see :mod:`.registry`). The
training interface it implements (:class:`~edgekd.train.objective.Objective`, ``Batch``) and the
teacher-outputs cache live in :mod:`edgekd.train`; they are re-exported here.
"""

from __future__ import annotations

from edgekd.distill import adaptive, ctkd, kd, kdpp, rkd  # noqa: F401  (register the methods)
from edgekd.distill.kd import KDLoss, kd_loss
from edgekd.distill.registry import OBJECTIVES, DistillMethodConfig, build_objective, register_method
from edgekd.train.objective import Batch, CrossEntropy, Objective
from edgekd.train.teacher_outputs import TeacherOutputs

__all__ = ["OBJECTIVES", "Batch", "CrossEntropy", "DistillMethodConfig", "KDLoss", "Objective",
           "TeacherOutputs", "build_objective", "kd_loss", "register_method"]
