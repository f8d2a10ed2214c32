"""The evaluation set a bundle carries (``eval_set.npz``) so ``edgekd bench --eval`` can measure
accuracy and fairness on the device, through the runtime that ships.

Stored compactly: uint8 images (N, H, W, 3) exactly as the data stage produced them, int64 labels
and protected-group indices, in one ``np.savez_compressed`` archive. It is read with
``allow_pickle=False``, so a bundle's eval set can never run code.

    write_eval_set(bundle_dir, data.test.images, data.test.labels, data.test.groups)
    images, labels, groups = read_eval_set(bundle_dir)
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgekd.data.rows import batches
from edgekd.errors import EdgeKDError
from edgekd.files import atomic_output
from edgekd.paths import inside

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
        raise EdgeKDError(
            f"{where}: images must be uint8 of shape (N, H, W, 3); got {images.dtype} {tuple(images.shape)}"
        )
    for name, arr in (("labels", labels), ("groups", groups)):
        if arr.ndim != 1 or len(arr) != len(images) or not np.issubdtype(arr.dtype, np.integer):
            raise EdgeKDError(
                f"{where}: {name} must be {len(images)} integers, one per image; got "
                f"{arr.dtype} {tuple(arr.shape)}"
            )


def write_eval_set(path: str | Path, images: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> Path:
    """Write ``eval_set.npz`` (into ``path`` when it is a directory) atomically; returns its path.

    The images are read and compressed a batch at a time (a memory-mapped test split is never
    resident whole), into the same archive ``np.savez_compressed`` writes.

    Parameters
    ----------
    path : bundle directory or file path
    images : uint8 array (N, H, W, 3)
    labels, groups : integer arrays (N,)
    """
    target = _file(path)
    images = images if isinstance(images, np.ndarray) else np.asarray(images)
    labels, groups = np.asarray(labels), np.asarray(groups)
    _check(images, labels, groups, str(target))
    with (
        atomic_output(target) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive,
    ):
        for name, array in (
            ("images", images),
            ("labels", labels.astype(np.int64)),
            ("groups", groups.astype(np.int64)),
        ):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(
                    member,
                    {
                        "descr": np.lib.format.dtype_to_descr(array.dtype),
                        "fortran_order": False,
                        "shape": array.shape,
                    },
                )  # rows are written in C order
                for chunk in batches(array, 256):
                    member.write(chunk.data.cast("B"))
    return target


MAX_EVAL_IMAGES = 1_000_000  # far above any test split; bounds what a hostile header can ask for


def _headers(source: Path) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """dtype and shape of each array of the npz, read from the .npy headers without loading.

    The bytes a header declares must be what the archive holds for that member (its
    uncompressed size in the zip directory, less the header): a 30 MB file whose header
    declares a million images is refused here, before anything is allocated."""
    out = {}
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            with archive.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(fh)
                header = fh.tell()
            dtype, shape = np.dtype(dtype), tuple(shape)
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if header + declared != info.file_size:
                raise ValueError(
                    f"{info.filename} declares {shape} {dtype} ({declared} bytes) but the "
                    f"archive holds {info.file_size - header} bytes for it"
                )
            out[name] = (dtype, shape)
    return out


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_headers(source: Path, preprocess: dict | None) -> None:
    try:
        headers = _headers(source)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, SyntaxError) as err:
        raise EdgeKDError(
            f"{source}: not an edgekd evaluation set (npz with images, labels, groups): "
            f"{str(err).splitlines()[0][:120] if str(err) else type(err).__name__}"
        ) from None
    dtype, shape = headers.get("images", (None, ()))
    if preprocess is None:  # sizes as the file holds them (checked in _headers), any input size
        _, h, w = (3, *shape[1:3]) if len(shape) == 4 else (3, 0, 0)
    else:
        _, h, w = preprocess["input_size"]
    if dtype != np.uint8 or len(shape) != 4 or shape[1:] != (h, w, 3) or shape[0] > MAX_EVAL_IMAGES:
        raise EdgeKDError(
            f"{source}: images must be uint8 (N, {h}, {w}, 3) with N <= {MAX_EVAL_IMAGES} "
            f"as preprocess.json input_size says; the header says {dtype} {shape}"
        )
    n = shape[0]
    memory = _memory_bytes()
    if memory is not None and n * h * w * 3 > memory // 2:
        raise EdgeKDError(
            f"{source}: {n} images of {h}x{w} need {n * h * w * 3} bytes, more than half "
            f"of this machine's memory ({memory} bytes); evaluate on a smaller set"
        )
    for name in ("labels", "groups"):
        dtype, shape = headers.get(name, (None, ()))
        if dtype is None or dtype.kind not in "iu" or shape != (n,):
            raise EdgeKDError(
                f"{source}: {name} must be {n} integers, one per image; the header says {dtype} {shape}"
            )


def _check_ranges(eval_set: EvalSet, preprocess: dict, source: Path) -> None:
    for name, values, names_key in (
        ("labels", eval_set.labels, "class_names"),
        ("groups", eval_set.groups, "protected_groups"),
    ):
        count = len(preprocess.get(names_key) or [])
        bad = np.flatnonzero((values < 0) | (values >= count))
        if len(bad):
            raise EdgeKDError(
                f"{source}: {name}[{bad[0]}] is {values[bad[0]]}; preprocess.json "
                f"{names_key} allows 0 to {count - 1}"
                + (f" ({len(bad)} values out of range)" if len(bad) > 1 else "")
            )


def read_eval_set(path: str | Path, preprocess: dict | None = None) -> EvalSet:
    """Read a bundle's ``eval_set.npz`` (``path`` is the bundle or the file).

    With ``preprocess`` (the bundle's preprocess.json), the array headers are checked against
    its input size before anything is decompressed, and every label and group must index its
    ``class_names`` and ``protected_groups``: a bad set is one line, never a wrong number.
    """
    source = _file(path)
    if not source.is_file():
        raise EdgeKDError(
            f"{source}: no evaluation set; build with bundle.include_eval_set: true to put one in the bundle"
        )
    inside(source.name, source.parent, listed_in=source.parent)  # not a symlink out of the bundle
    _check_headers(source, preprocess)
    try:
        with np.load(source, allow_pickle=False) as archive:
            images, labels, groups = archive["images"], archive["labels"], archive["groups"]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise EdgeKDError(
            f"{source}: not an edgekd evaluation set (npz with images, labels, groups): "
            f"{str(err).splitlines()[0][:120] if str(err) else type(err).__name__}"
        ) from None
    except MemoryError:
        raise EdgeKDError(f"{source}: too large to load into this machine's memory") from None
    _check(images, labels, groups, str(source))
    eval_set = EvalSet(images, labels, groups)
    if preprocess is not None:
        _check_ranges(eval_set, preprocess, source)
    return eval_set
