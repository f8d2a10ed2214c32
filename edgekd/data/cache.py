"""Decoded images on disk, written once and memory-mapped afterwards (``data.cache_dir``).

One split's images are one ``images-<fingerprint>-<size>px.npy`` (uint8, (N, size, size, 3))
plus a small JSON index beside it (``.json``: the full fingerprint, the shape, the file's size
and the files that did not decode). The fingerprint is the caller's hash of everything that
determines the pixels (for image files: each file's path, size and modification time in ns, the
crop boxes, the size and the decoder), so a changed image gives another name and a re-decode.

Writing: the images are produced in chunks of about 32 MB and appended to a temporary file with
ordinary writes (no map), so the builder's memory holds one chunk whatever the data set's size;
rows of files that did not decode are then dropped (a second pass, only when there are such
files). The ``.npy`` is renamed into place and the index written last: an index is the mark of a
finished cache, and a killed build leaves only a temporary file, named by host and pid, that the
next load deletes (:func:`remove_orphans`). A cache is trusted only when its index, header and
file size agree; anything else (a truncated or foreign file) is rebuilt. One process builds a
given cache at a time (a lock file beside it): the other ranks of a torchrun job, or a second
build, wait and then read it. Pixel corruption that keeps the file's size is not detected
(checking it would mean reading the whole file on every load).

Reading: ``np.load(mmap_mode="c")``, copy-on-write: pages shared with the page cache, a writable
array (torch warns on read-only NumPy arrays) whose writes stay private. Batches are read from it
with :mod:`edgekd.data.rows`, so only the batches in use are resident.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgekd.data.rows import take
from edgekd.errors import EdgeKDError
from edgekd.files import write_atomic

__all__ = ["cached_images", "remove_orphans", "check_cache_dir", "CHUNK_BYTES"]

FORMAT = 2  # of the index; 1 was a bare list of bad files (``.bad.json``)
CHUNK_BYTES = 32 << 20  # images produced and written per step while building

# fill(start, stop) -> (images[start:stop] as uint8 (stop - start, size, size, 3),
#                       [(index, reason) for each image in the range that could not be made])
Fill = Callable[[int, int], tuple[np.ndarray, list[tuple[int, str]]]]


def _tmp_name(target: Path) -> Path:
    """A temporary name that says who writes it (host and pid), so a later load can tell an
    orphan of a killed process from the work of a live one."""
    return target.with_name(f".{target.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_orphans(cache_dir: Path) -> list[Path]:
    """Delete the temporary cache files of dead processes on this host (a build killed while it
    decoded); returns what was removed."""
    host, removed = socket.gethostname(), []
    for tmp in cache_dir.glob(".images-*.npy.*.tmp"):
        parts = tmp.name.removesuffix(".tmp").rsplit(".", 2)
        if len(parts) == 3 and parts[1] == host and parts[2].isdigit() and not _alive(int(parts[2])):
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # a read-only cache: nothing of ours to clean
                continue
            removed.append(tmp)
    return removed


def check_cache_dir(cache_dir: Path, *, writable: bool) -> None:
    """Create ``cache_dir`` if missing; one line when it is a file, cannot be created or (with
    ``writable``) cannot take a new file."""
    way_out = "set data.cache_dir (default ~/.cache/edgekd, or $EDGEKD_CACHE) to a writable folder"
    if cache_dir.exists() and not cache_dir.is_dir():
        raise EdgeKDError(f"data.cache_dir: {cache_dir} is a file, not a folder; {way_out}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if writable:
            with tempfile.TemporaryFile(dir=cache_dir):
                pass
    except OSError as err:
        what = "cannot be created" if not cache_dir.is_dir() else "is not writable"
        raise EdgeKDError(f"data.cache_dir: {cache_dir} {what} ({err.strerror or err}); {way_out}") from None


def _paths(cache_dir: Path, fingerprint: str, size: int) -> tuple[Path, Path]:
    target = cache_dir / f"images-{fingerprint[:24]}-{size}px.npy"
    return target, target.with_suffix(".json")


def _read(
    target: Path, index_path: Path, fingerprint: str, count: int, size: int
) -> tuple[np.ndarray, list[tuple[int, str]]] | None:
    """The cache when its index, header and size agree with what is asked, else ``None``."""
    try:
        index = json.loads(index_path.read_text())
        if (
            index.get("format") != FORMAT
            or index.get("fingerprint") != fingerprint
            or index.get("files") != count
        ):
            return None
        bad = [(int(i), str(reason)) for i, reason in index["bad"]]
        shape = (count - len(bad), size, size, 3)
        if tuple(index["shape"]) != shape or target.stat().st_size != index["bytes"]:
            return None
        images = np.load(target, mmap_mode="c")
    except (OSError, ValueError, KeyError, TypeError, EOFError, SyntaxError):
        return None
    if images.shape != shape or images.dtype != np.uint8:
        return None
    return images, bad


def cached_images(
    cache_dir: Path, fingerprint: str, *, count: int, size: int, fill: Fill, chunk_bytes: int = CHUNK_BYTES
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The ``count`` images that ``fill`` makes, from the cache under ``fingerprint`` when it
    holds them, else made chunk by chunk and cached; also the ``(index, reason)`` of every image
    ``fill`` could not make, whose rows the returned memory-mapped array leaves out.

    Parameters
    ----------
    cache_dir : Path
        The folder (created if missing; a one-line error when it cannot be used).
    fingerprint : str
        A hex digest of everything that determines the pixels.
    count, size : int
        How many images and their side in pixels.
    fill : callable
        ``fill(start, stop)`` returns ``images[start:stop]`` and the failures among them
        (their rows are ignored); called once per chunk, in order.
    """
    target, index_path = _paths(cache_dir, fingerprint, size)
    check_cache_dir(cache_dir, writable=False)
    remove_orphans(cache_dir)
    found = _read(target, index_path, fingerprint, count, size)
    if found is not None:
        return found
    check_cache_dir(cache_dir, writable=True)
    from filelock import FileLock

    with FileLock(str(target.with_suffix(".lock"))):  # one builder; the others wait, then read
        found = _read(target, index_path, fingerprint, count, size)
        if found is None:
            _write(target, index_path, fingerprint, count, size, fill, chunk_bytes)
            found = _read(target, index_path, fingerprint, count, size)
    if found is None:
        raise EdgeKDError(
            f"data.cache_dir: {target} was written but does not read back; delete it and build again"
        )
    return found


def _write(
    target: Path, index_path: Path, fingerprint: str, count: int, size: int, fill: Fill, chunk_bytes: int
) -> None:
    tmp = _tmp_name(target)
    compact = _tmp_name(target.with_name(target.name + ".kept"))
    row_bytes = size * size * 3
    step = max(1, chunk_bytes // row_bytes)
    try:
        bad: list[tuple[int, str]] = []
        with _npy_file(tmp, count, size) as out:
            for start in range(0, count, step):
                stop = min(count, start + step)
                pixels, failed = fill(start, stop)
                pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
                if pixels.shape != (stop - start, size, size, 3):
                    raise ValueError(f"fill gave {pixels.shape} for images {start}:{stop}")
                out.write(pixels.data.cast("B"))
                bad += failed
        bad.sort()
        if bad:  # keep the good rows only, so a split never copies itself to drop them
            keep = np.setdiff1d(np.arange(count), [i for i, _ in bad])
            full = np.load(tmp, mmap_mode="r")
            with _npy_file(compact, len(keep), size) as out:
                for start in range(0, len(keep), step):
                    out.write(take(full, keep[start : start + step]).data.cast("B"))
            del full
            os.replace(compact, tmp)
        os.replace(tmp, target)
        write_atomic(
            index_path,
            json.dumps(
                {
                    "format": FORMAT,
                    "fingerprint": fingerprint,
                    "files": count,
                    "shape": [count - len(bad), size, size, 3],
                    "dtype": "uint8",
                    "bytes": target.stat().st_size,
                    "bad": bad,
                }
            ),
        )
    except OSError as err:
        raise EdgeKDError(
            f"data.cache_dir: writing {target} failed ({err.strerror or err}); free "
            "space there or set data.cache_dir to another folder"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
        compact.unlink(missing_ok=True)


@contextmanager
def _npy_file(path: Path, count: int, size: int) -> Iterator[BinaryIO]:
    """A ``.npy`` of uint8 (count, size, size, 3), open after its header: rows are appended."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": (count, size, size, 3),
    }
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        yield fh
