"""uint8 images to normalised model input, and the one batched inference loop of torch models."""

from __future__ import annotations

import numpy as np
import torch

from edgekd.data.rows import batches, eval_batch_size

__all__ = ["to_input", "predict", "predict_logits"]


def to_input(images: np.ndarray, mean, std, device: torch.device | str | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, normalised, in channels-last memory.

    The uint8 batch moves to ``device`` before it is widened, so a GPU copies a quarter of the bytes.
    """
    x = torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean_t).div_(std_t)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    images: np.ndarray,
    mean,
    std,
    *,
    batch_size: int | None = None,
    features: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Logits of ``model`` in eval mode for uint8 images, as float32 ``(N, classes)``; with
    ``features=True`` also the pooled penultimate features ``(N, D)`` (the classifier's input).

    The images are read and normalised one batch at a time (a memory-mapped split stays on disk,
    :mod:`edgekd.data.rows`): a whole split as float32 would take four times its uint8 size.
    ``batch_size`` defaults to :func:`~edgekd.data.rows.eval_batch_size` (256 up to 64 px)."""
    from edgekd.models import pooled_features_and_logits

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, pooled = [], []
    for pixels in batches(images, batch_size or eval_batch_size(images)):
        x = to_input(pixels, mean, std, device)
        if features:
            f, z = pooled_features_and_logits(model, x)
            pooled.append(f.float().cpu().numpy())
        else:
            z = model(x)
        logits.append(z.float().cpu().numpy())
    model.train(was_training)
    out = np.concatenate(logits) if logits else np.zeros((0, 0), dtype=np.float32)
    if not features:
        return out
    return out, np.concatenate(pooled) if pooled else np.zeros((0, 0), dtype=np.float32)


def predict_logits(
    model: torch.nn.Module, images: np.ndarray, mean, std, batch_size: int | None = None
) -> np.ndarray:
    """Logits of ``model`` in eval mode for uint8 images (see :func:`predict`)."""
    return predict(model, images, mean, std, batch_size=batch_size)
