"""Training: one loop (:func:`fit`) for every stage, and batched inference helpers."""

from edgekd.train.loop import fit
from edgekd.train.tensors import predict_logits, to_input

__all__ = ["fit", "predict_logits", "to_input"]
