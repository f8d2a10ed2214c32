"""Gradient reversal (Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", 2015).

``grad_reverse(x, strength)`` is the identity going forward and multiplies the gradient by
``-strength`` going back. Placed between a quantity and a loss it turns "minimise" into
"maximise" for everything upstream of it, so one backward pass trains two players of a minimax
game: CTKD's temperature (which maximises the KD loss) and the debiasing adversary's opponent
(the student, which maximises the adversary's loss).
"""

from __future__ import annotations

import torch

__all__ = ["grad_reverse"]


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def grad_reverse(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Identity forward; gradient times ``-strength`` backward."""
    return _GradReverse.apply(x, float(strength))
