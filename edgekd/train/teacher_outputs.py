"""The frozen teacher's outputs on a split, computed once and kept on disk.

The student's training images carry no random transform (generated sources draw each epoch's
images deterministically from the seed and the epoch; file sources apply none), so the teacher's
logits and pooled features of an epoch are a pure function of the teacher and the data. They are
computed once, in eval mode and large batches, and stored as ``<key>.npz`` in a stage directory
keyed by the teacher stage and the data: every later distillation of the same teacher (another
method, a sweep point, a resumed build) reads them instead of running the teacher, so a
distillation epoch costs about what a baseline epoch costs (``benchmarks/bench_teacher_cache.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from edgekd.data.splits import DataSplits, Split
from edgekd.files import write_atomic
from edgekd.models.tensors import predict
from edgekd.train.distributed import SINGLE, Dist

__all__ = ["TeacherOutputs", "teacher_forward"]


def teacher_forward(teacher: torch.nn.Module, images: np.ndarray, mean, std, *,
                    batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, C)`` and pooled features ``(N, D)`` of ``teacher`` in eval mode."""
    return predict(teacher, images, mean, std, batch_size=batch_size, features=True)


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

    def __init__(self, teacher: torch.nn.Module, data: DataSplits, *,
                 cache_dir: Path | None = None, dist: Dist = SINGLE) -> None:
        self.teacher = teacher
        self.data = data
        self.dist = dist
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.computed = 0  # how many splits had to run the teacher (the rest were read)

    def epoch_key(self, epoch: int) -> str:
        fresh = self.data.description.get("fresh_train_each_epoch", False)
        return f"epoch-{epoch}" if fresh else "epoch-0"

    def for_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        return self.for_split(self.data.train_for_epoch(epoch), key=self.epoch_key(epoch))

    def for_split(self, split: Split, *, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Logits and features of ``split``, stored under ``key``."""
        if key in self._memory:
            return self._memory[key]
        # Under torchrun rank 0 computes (or reads) and sends; no shared filesystem needed.
        outputs = self._compute_or_read(split, key) if self.dist.is_main else None
        outputs = self.dist.broadcast(outputs)
        # Keep the current split only: a long build must not hold every epoch in memory.
        self._memory = {key: outputs}
        return outputs

    def _compute_or_read(self, split: Split, key: str) -> tuple[np.ndarray, np.ndarray]:
        path = self.cache_dir / f"{key}.npz" if self.cache_dir is not None else None
        outputs = None
        if path is not None and path.exists():
            with np.load(path) as stored:
                if len(stored["logits"]) == len(split):
                    outputs = stored["logits"], stored["features"]
        if outputs is None:
            outputs = teacher_forward(self.teacher, split.images, self.data.mean, self.data.std)
            self.computed += 1
            if path is not None:
                buffer = io.BytesIO()
                np.savez(buffer, logits=outputs[0], features=outputs[1])
                write_atomic(path, buffer.getvalue())
        return outputs
