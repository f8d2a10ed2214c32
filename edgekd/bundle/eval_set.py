"""The evaluation set a bundle carries (``eval_set.npz``) so ``edgekd bench --eval`` can measure
accuracy and fairness on the device, through the runtime that ships.

Stored compactly: uint8 images (N, H, W, 3) exactly as the data stage produced them, int64 labels
and protected-group indices, in one ``np.savez_compressed`` archive. It is read with
``allow_pickle=False``, so a bundle's eval set can never run code.

    write_eval_set(bundle_dir, data.test.images, data.test.labels, data.test.groups)
    images, labels, groups = read_eval_set(bundle_dir)
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.files import write_atomic

__all__ = ["EVAL_SET", "EvalSet", "write_eval_set", "read_eval_set"]

EVAL_SET = "eval_set.npz"


class EvalSet(NamedTuple):
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64 class index
    groups: np.ndarray  # (N,) int64 protected-group index


def _file(path: str | Path) -> Path:
    path = Path(path)
    return path / EVAL_SET if path.is_dir() else path


def _check(images: np.ndarray, labels: np.ndarray, groups: np.ndarray, where: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise EdgeKDError(f"{where}: images must be uint8 of shape (N, H, W, 3); got {images.dtype} "
                          f"{tuple(images.shape)}")
    for name, arr in (("labels", labels), ("groups", groups)):
        if arr.ndim != 1 or len(arr) != len(images) or not np.issubdtype(arr.dtype, np.integer):
            raise EdgeKDError(f"{where}: {name} must be {len(images)} integers, one per image; got "
                              f"{arr.dtype} {tuple(arr.shape)}")


def write_eval_set(path: str | Path, images: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> Path:
    """Write ``eval_set.npz`` (into ``path`` when it is a directory) atomically; returns its path.

    Parameters
    ----------
    path : bundle directory or file path
    images : uint8 array (N, H, W, 3)
    labels, groups : integer arrays (N,)
    """
    target = _file(path)
    images, labels, groups = np.asarray(images), np.asarray(labels), np.asarray(groups)
    _check(images, labels, groups, str(target))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels.astype(np.int64),
                        groups=groups.astype(np.int64))
    write_atomic(target, buffer.getvalue())
    return target


def read_eval_set(path: str | Path) -> EvalSet:
    """Read a bundle's ``eval_set.npz`` (``path`` is the bundle or the file)."""
    source = _file(path)
    if not source.is_file():
        raise EdgeKDError(f"{source}: no evaluation set; build with bundle.include_eval_set: true "
                          f"to put one in the bundle")
    try:
        with np.load(source, allow_pickle=False) as archive:
            images, labels, groups = archive["images"], archive["labels"], archive["groups"]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise EdgeKDError(f"{source}: not an edgekd evaluation set (npz with images, labels, groups): "
                          f"{str(err).splitlines()[0][:120]}") from None
    _check(images, labels, groups, str(source))
    return EvalSet(images, labels, groups)
