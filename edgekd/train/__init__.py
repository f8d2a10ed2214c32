"""Training: one loop (:func:`fit`) for every stage, the objective interface it trains, and the
teacher-outputs cache that feeds distillation objectives."""

from edgekd.train.loop import fit
from edgekd.train.objective import Batch, CrossEntropy, Objective
from edgekd.train.teacher_outputs import TeacherOutputs

__all__ = ["fit", "Batch", "CrossEntropy", "Objective", "TeacherOutputs"]
