"""Reweighing (Kamiran & Calders, "Data preprocessing techniques for classification without
discrimination", Knowledge and Information Systems 33, 2012), applied by resampling.

Under a biased split the label predicts the group (90% of a class's images in its majority
group), so any loss averaged over the images rewards the group as a shortcut. Reweighing gives
each image of class ``c`` and group ``g`` the weight that makes label and group independent::

    w(c, g) = P(c) * P(g) / P(c, g)

so every (class, group) cell carries the mass ``P(c) P(g)`` it would have if the groups were
spread evenly over the classes. With bias 0.9, two groups and balanced classes a majority cell
gets ``0.25 * 0.5 / 0.225 = 0.56`` and a minority cell ``0.25 * 0.5 / 0.025 = 5``.

The weights are applied by drawing each epoch's images with probability proportional to ``w``
(with replacement; Kamiran & Calders' "uniform sampling"), not by weighting the loss: every
distillation loss (relational ones included, which have no per-image term) then sees a balanced
epoch unchanged, and cached teacher outputs stay those of the images drawn.
"""

from __future__ import annotations

import numpy as np

from edgekd.data.splits import cell_weights
from edgekd.train.objective import ObjectiveWrapper

__all__ = ["Reweighing"]


class Reweighing(ObjectiveWrapper):
    """Wraps an objective: the loss is unchanged, the epoch's images are drawn by
    :func:`~edgekd.data.splits.cell_weights` (the loop asks :meth:`sample_weights`)."""

    def sample_weights(self, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
        return cell_weights(labels, groups)
