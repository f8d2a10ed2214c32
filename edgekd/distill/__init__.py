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

A method is a loss module and its recipe section in :mod:`.configs` (see :mod:`.registry`). The
training interface it implements (:class:`~edgekd.train.objective.Objective`, ``Batch``) and the
teacher-outputs cache live in :mod:`edgekd.train`; they are re-exported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgekd.distill.configs import METHOD_CONFIGS  # the sections, torch-free
from edgekd.distill.registry import DistillMethodConfig, register_method

if TYPE_CHECKING:
    from edgekd.distill.kd import KDLoss, kd_loss
    from edgekd.distill.registry import OBJECTIVES, build_objective
    from edgekd.train.objective import Batch, CrossEntropy, Objective
    from edgekd.train.teacher_outputs import TeacherOutputs

__all__ = [
    "METHOD_CONFIGS",
    "OBJECTIVES",
    "Batch",
    "CrossEntropy",
    "DistillMethodConfig",
    "KDLoss",
    "Objective",
    "TeacherOutputs",
    "build_objective",
    "kd_loss",
    "load_methods",
    "register_method",
]

_METHODS = ("adaptive", "ctkd", "kd", "kdpp", "rkd")
# The losses (torch), loaded on first use: the recipe reads the sections without importing torch.
_LAZY = {
    "OBJECTIVES": "edgekd.distill.registry",
    "build_objective": "edgekd.distill.registry",
    "KDLoss": "edgekd.distill.kd",
    "kd_loss": "edgekd.distill.kd",
    "Batch": "edgekd.train.objective",
    "CrossEntropy": "edgekd.train.objective",
    "Objective": "edgekd.train.objective",
    "TeacherOutputs": "edgekd.train.teacher_outputs",
}


def load_methods() -> None:
    """Import every built-in method's loss module, which registers it in ``OBJECTIVES``."""
    for method in _METHODS:
        importlib.import_module(f"edgekd.distill.{method}")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgekd.distill' has no attribute {name!r}")
    load_methods()
    return getattr(importlib.import_module(_LAZY[name]), name)
