"""Decode image files once into a uint8 array cache, shared by the file-based sources.

Decoding thousands of JPEGs on every build is slow, so a split's images are decoded (Pillow),
optionally cropped to a box, resized to ``size x size`` and written to one ``.npy`` file under
the cache directory, named by a hash of everything that determines it (the files' paths, sizes
and modification times, the crop boxes and the size). Later builds, other recipes and the other
ranks of a torchrun job memory-map it. The file is written to a temporary name and renamed, so
two processes building it at once never see a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError

__all__ = ["load_images", "resolve_dir", "default_cache_dir"]

Box = tuple[float, float, float, float]  # x, y, w, h in pixels


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


def resolve_dir(path: Path, key: str) -> Path:
    if not path.is_dir():
        raise EdgeKDError(f"{key}: folder {str(path)!r} does not exist")
    return path


def _decode(path: Path, size: int, box: Box | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if box is not None:
                x, y, w, h = box
                right, bottom = min(image.width, x + max(w, 1)), min(image.height, y + max(h, 1))
                image = image.crop((max(0, int(x)), max(0, int(y)), int(right), int(bottom)))
            return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    except FileNotFoundError:
        raise EdgeKDError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise EdgeKDError(f"{path}: cannot decode this image ({err.__class__.__name__})") from None


def load_images(paths: list[Path], *, size: int, cache_dir: Path | None,
                boxes: list[Box | None] | None = None) -> np.ndarray:
    """(N, size, size, 3) uint8 images of ``paths`` (cropped to ``boxes``), from the cache when
    it holds them, else decoded and cached."""
    boxes = boxes or [None] * len(paths)
    if cache_dir is None:
        return np.stack([_decode(p, size, b) for p, b in zip(paths, boxes)]) if paths else \
            np.zeros((0, size, size, 3), np.uint8)
    digest = hashlib.sha256()
    for path, box in zip(paths, boxes):
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise EdgeKDError(f"{path}: image file not found") from None
        digest.update(json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, box]).encode())
    digest.update(str(size).encode())
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"images-{digest.hexdigest()[:24]}-{size}px.npy"
    if target.exists():
        return np.load(target, mmap_mode="r")
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(paths), size, size, 3))
        for i, (path, box) in enumerate(zip(paths, boxes)):
            out[i] = _decode(path, size, box)
        out.flush()
        del out
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.load(target, mmap_mode="r")
