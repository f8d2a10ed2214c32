"""A split's images read a batch at a time, never the whole split.

File sources keep their decoded images in a memory-mapped ``.npy`` (:mod:`edgekd.data.cache`).
Indexing the map would give the right pixels, but every page it touches stays mapped into the
process: one pass over a split (an epoch, an evaluation) makes the whole split resident, and the
build's memory grows with the data set even though the kernel could drop those pages. So rows of
a mapped file are read with plain file reads into a fresh array: the map itself is never touched,
the file's pages live in the kernel's page cache (shared, dropped under pressure), and the
process holds only the batches in flight. Arrays in memory are simply indexed.

    for pixels in batches(split.images, 256):           # contiguous batches, one read ahead
        ...
    for pixels in prefetch(split.images, index_lists):  # any batches (a shuffled epoch)
        ...

A copy-on-write map (``mmap_mode="c"``) that someone wrote to would differ from its file; edgekd
never writes to a split's images.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgekd.errors import EdgeKDError

__all__ = ["take", "batches", "prefetch", "mapped_file", "eval_batch_size", "EVAL_PIXELS"]

# Pixels per inference batch: 256 images up to 64 x 64 px, fewer above, so a batch's activations
# (and the peak memory benchmarks/bench_data_cache.py measures) stay the same at any resolution.
EVAL_PIXELS = 256 * 64 * 64

Index = np.ndarray | slice | list[int]


def mapped_file(images: np.ndarray) -> tuple[str, int] | None:
    """``(file, byte offset of images[0])`` when ``images`` is a C-contiguous run of rows of a
    memory-mapped file (the map itself or a slice of its rows), else ``None``."""
    root = images
    while isinstance(root, np.ndarray) and isinstance(root.base, np.ndarray):
        root = root.base
    if not (
        isinstance(root, np.memmap)
        and isinstance(root.base, mmap.mmap)
        and root.filename
        and images.ndim >= 1
        and images.flags.c_contiguous
    ):
        return None
    start = images.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return root.filename, root.offset + start


def _indices(index: Index, n: int) -> np.ndarray:
    if isinstance(index, slice):
        return np.arange(*index.indices(n))
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if len(index) and (index.min() < -n or index.max() >= n):
        raise IndexError(f"index out of range for {n} images")
    return np.where(index < 0, index + n, index)


def take(images: np.ndarray, index: Index) -> np.ndarray:
    """``images[index]`` as a new C-contiguous array in memory (``index``: integers or a slice).

    Rows of a memory-mapped file are read from the file, one read per run of consecutive
    indices, so the map gains no resident pages.
    """
    where = mapped_file(images)
    if where is None:
        return np.ascontiguousarray(images[index])
    rows = _indices(index, len(images))
    out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    if not len(rows):
        return out
    row_bytes = images.strides[0]
    runs = np.flatnonzero(np.diff(rows) != 1) + 1
    starts, ends = np.concatenate([[0], runs]), np.concatenate([runs, [len(rows)]])
    view = out.data.cast("B")
    filename, offset = where
    with open(filename, "rb", buffering=0) as fh:
        for a, b in zip(starts.tolist(), ends.tolist()):
            _read_exactly(
                fh, view[a * row_bytes : b * row_bytes], offset + int(rows[a]) * row_bytes, filename
            )
    return out


def _read_exactly(fh, buffer: memoryview, position: int, filename: str) -> None:
    done = 0
    while done < len(buffer):
        fh.seek(position + done)
        got = fh.readinto(buffer[done:])
        if not got:
            raise EdgeKDError(
                f"{filename}: the image cache ended early (changed while this build "
                "read it?); run the build again to rebuild it"
            )
        done += got


def prefetch(images: np.ndarray, indices: Iterable[Index]) -> Iterator[np.ndarray]:
    """``take(images, index)`` for each index of ``indices``, in order. Rows of a mapped file are
    read one batch ahead by a background thread (file reads release the GIL), so the next
    batch's reads overlap the current batch's compute; arrays in memory are indexed in place."""
    if mapped_file(images) is None:
        for index in indices:
            yield take(images, index)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgekd-rows") as pool:
        pending = None
        for index in indices:
            job = pool.submit(take, images, index)
            if pending is not None:
                yield pending.result()
            pending = job
        if pending is not None:
            yield pending.result()


def eval_batch_size(images: np.ndarray) -> int:
    """Images per inference batch for (N, H, W, 3) ``images``: 256 up to 64 x 64 px, fewer for
    larger images (:data:`EVAL_PIXELS`); 128 px gives 64, 224 px gives 20."""
    height, width = images.shape[1:3]
    return max(1, min(256, EVAL_PIXELS // max(1, height * width)))


def batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive batches ``images[i:i + batch_size]`` (see :func:`prefetch`)."""
    return prefetch(images, (slice(i, i + batch_size) for i in range(0, len(images), batch_size)))
