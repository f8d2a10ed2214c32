"""The frozen teacher's outputs on a split, computed once and kept on disk.

Generated sources draw each epoch's images deterministically from the seed and the epoch, file
sources return the same images every epoch, and the student's augmentation
(:mod:`edgekd.data.augment`) is a function of ``(seed, epoch, index)``: so the teacher's logits
and pooled features of an epoch are a pure function of the teacher, the data and the
augmentation. They are computed once, in eval mode and large batches, and stored as
``<key>.npz`` in a stage directory keyed by the teacher stage, the data and the student's
augmentation: every later distillation of the same teacher (another method, a sweep point, a
resumed build) reads them instead of running the teacher, so a distillation epoch costs about
what a baseline epoch costs (``benchmarks/bench_teacher_cache.py``).

Without augmentation one file serves every epoch of a file source (``epoch-0``); with it every
epoch has its own (``epoch-<k>-augmented-<settings hash>``), computed by running the teacher over
that epoch's augmented images, batch by batch, through the very function that augments the
student's batches. That costs one teacher pass in eval mode per epoch, about what running the
teacher on every training batch costs (``distill.cache_teacher: false``), but only the first
distillation pays it, and the disk holds ``N x (classes + features)`` float32 per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from edgekd.data.augment import Augmenter
from edgekd.data.rows import batches, eval_batch_size
from edgekd.data.splits import DataSplits, Split
from edgekd.files import atomic_output
from edgekd.models.tensors import predict
from edgekd.train.distributed import SINGLE, Dist

__all__ = ["TeacherOutputs", "teacher_forward"]

Transform = Callable[[np.ndarray, np.ndarray], np.ndarray]


def teacher_forward(
    teacher: torch.nn.Module,
    images: np.ndarray,
    mean,
    std,
    *,
    batch_size: int | None = None,
    transform: Transform | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, C)`` and pooled features ``(N, D)`` of ``teacher`` in eval mode.

    ``transform(batch, indices)``, when given, turns each uint8 batch (and the images' indices in
    ``images``) into what the teacher sees: the student's augmentation of an epoch. It runs batch
    by batch, so a memory-mapped split is never copied whole.
    """
    if transform is None:
        return predict(teacher, images, mean, std, batch_size=batch_size, features=True)
    batch_size = batch_size or eval_batch_size(images)
    parts = [
        predict(
            teacher,
            transform(pixels, np.arange(i, i + len(pixels))),
            mean,
            std,
            batch_size=batch_size,
            features=True,
        )
        for i, pixels in zip(range(0, len(images), batch_size), batches(images, batch_size))
    ]
    if not parts:
        return predict(teacher, images, mean, std, batch_size=batch_size, features=True)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class TeacherOutputs:
    """Teacher logits and features per split, memoised in memory and (optionally) on disk.

    Parameters
    ----------
    teacher : nn.Module
        The trained, frozen teacher.
    data : DataSplits
        Where the splits come from (``train_for_epoch``, ``val``).
    cache_dir : Path, optional
        Directory for ``<key>.npz`` files; ``None`` keeps outputs in memory only.
    """

    def __init__(
        self,
        teacher: torch.nn.Module,
        data: DataSplits,
        *,
        cache_dir: Path | None = None,
        dist: Dist = SINGLE,
    ) -> None:
        self.teacher = teacher
        self.data = data
        self.dist = dist
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.computed = 0  # how many splits had to run the teacher (the rest were read)

    def epoch_key(self, epoch: int, augment: Augmenter | None = None) -> str:
        """The name of epoch ``epoch``'s outputs: one per epoch when the images change every
        epoch (fresh generated images, augmentation), named by the augmentation's settings and
        seed, so other settings never read these."""
        if augment is not None and augment.enabled:
            return f"epoch-{epoch}-augmented-{augment.key}"
        fresh = self.data.description.get("fresh_train_each_epoch", False)
        return f"epoch-{epoch}" if fresh else "epoch-0"

    def for_epoch(
        self, epoch: int, *, split: Split | None = None, augment: Augmenter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and features of epoch ``epoch``'s training images (``split``, default
        ``data.train_for_epoch(epoch)``) as ``augment`` makes them for the student."""
        split = split if split is not None else self.data.train_for_epoch(epoch)
        transform = partial(augment, epoch=epoch) if augment is not None and augment.enabled else None
        return self.for_split(split, key=self.epoch_key(epoch, augment), transform=transform)

    def for_split(
        self,
        split: Split,
        *,
        key: str,
        transform: Transform | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and features of ``split`` (each batch through ``transform``, see
        :func:`teacher_forward`), stored under ``key``."""
        if key in self._memory:
            return self._memory[key]
        # Under torchrun rank 0 computes (or reads) and sends; no shared filesystem needed.
        outputs = self._compute_or_read(split, key, transform) if self.dist.is_main else None
        outputs = self.dist.broadcast(outputs)
        # Keep the current split only: a long build must not hold every epoch in memory.
        self._memory = {key: outputs}
        return outputs

    def _compute_or_read(
        self,
        split: Split,
        key: str,
        transform: Transform | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        path = self.cache_dir / f"{key}.npz" if self.cache_dir is not None else None
        outputs = None
        if path is not None and path.exists():
            with np.load(path) as stored:
                if len(stored["logits"]) == len(split):
                    outputs = stored["logits"], stored["features"]
        if outputs is None:
            outputs = teacher_forward(
                self.teacher, split.images, self.data.mean, self.data.std, transform=transform
            )
            self.computed += 1
            if path is not None:  # straight to the file: no copy of the outputs in memory
                with atomic_output(path) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, logits=outputs[0], features=outputs[1])
        return outputs
