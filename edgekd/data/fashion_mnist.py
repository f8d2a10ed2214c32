"""``data.source: fashion_mnist_colored``: the real Fashion-MNIST images (Xiao et al. 2017),
coloured so that colour is a shortcut, the Colored-MNIST way.

The idx files are read as Debian's ``dataset-fashion-mnist`` package installs them (``path``,
default ``/usr/share/datasets/fashion-mnist``; ``train-images-idx3-ubyte`` etc., gzipped or not).
idx format: a big-endian header (magic ``0x00000803`` for images, ``0x00000801`` for labels,
then the dimension sizes as int32) followed by uint8 data.

Each 28 x 28 grey image is tinted warm (red) or cool (blue); the tint is the protected group.
As in ``trifeature``, in train and validation class ``c`` takes its majority group ``c % 2``
with probability ``bias``; the test split is balanced (half of each class in each group). The
last ``val_size`` training images are the validation split; ``train_size`` keeps a seeded random
share of the rest, so a CPU build can train on part of the 60000 images; ``test_size`` keeps a
seeded subset of the 10000 test images stratified over the (class, tint) cells, so it stays
balanced (all of them when unset).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgekd.data._subset import SizedTestConfig, kept_test_indices
from edgekd.data.cache import cached_images
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits, Split
from edgekd.errors import EdgeKDError

__all__ = ["read_idx", "load_fashion_mnist_colored", "CLASSES"]

CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
_TINTS = np.array([[1.0, 0.35, 0.2], [0.2, 0.45, 1.0]])  # warm, cool


def read_idx(path: Path) -> np.ndarray:
    """An idx file (``.gz`` or plain) as a uint8 array."""
    candidates = [path, path.with_name(path.name + ".gz")]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise EdgeKDError(
            f"data.path: {path.name}(.gz) not found in {path.parent} (install "
            "Debian's dataset-fashion-mnist or set data.path)"
        )
    raw = gzip.decompress(found.read_bytes()) if found.suffix == ".gz" else found.read_bytes()
    if len(raw) < 8 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise EdgeKDError(f"{found}: not an idx file of unsigned bytes")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise EdgeKDError(f"{found}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def _colour(grey: np.ndarray, groups: np.ndarray, size: int) -> np.ndarray:
    rgb = (grey[..., None].astype(np.float32) * _TINTS[groups][:, None, None, :]).astype(np.uint8)
    if size != rgb.shape[1]:
        from PIL import Image

        rgb = np.stack(
            [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in rgb]
        )
    return rgb


def _images(grey: np.ndarray, groups: np.ndarray, size: int, cache_dir: Path | None) -> np.ndarray:
    """The tinted images: in memory, or (``cache_dir``) made in chunks into a memory-mapped cache
    keyed by the grey pixels and groups themselves (hashing them is cheap) and the size."""
    if cache_dir is None:
        return _colour(grey, groups, size)
    digest = hashlib.sha256(
        json.dumps(
            {
                "source": "fashion_mnist_colored",
                "size": size,
                "tints": _TINTS.tolist(),
                "resize": "pillow bilinear",
            }
        ).encode()
    )
    if size != grey.shape[1]:
        import PIL

        digest.update(PIL.__version__.encode())
    digest.update(np.ascontiguousarray(grey).tobytes())
    digest.update(np.ascontiguousarray(groups, dtype=np.int64).tobytes())
    images, _ = cached_images(
        Path(cache_dir),
        digest.hexdigest(),
        count=len(grey),
        size=size,
        fill=lambda a, b: (_colour(grey[a:b], groups[a:b], size), []),
    )
    return images


def _groups(labels: np.ndarray, bias: float, rng) -> np.ndarray:
    majority = labels % 2
    return np.where(rng.random(len(labels)) < bias, majority, 1 - majority).astype(np.int64)


class FashionMnistColoredConfig(SizedTestConfig):
    """``data.source: fashion_mnist_colored``: Fashion-MNIST tinted by a biased colour group."""

    source: Literal["fashion_mnist_colored"] = "fashion_mnist_colored"
    path: Path = Field(
        Path("/usr/share/datasets/fashion-mnist"),
        description="folder of idx files (where Debian's dataset-fashion-mnist puts them)",
    )
    image_size: int = Field(32, ge=16, le=512, description="height and width in pixels (from 28)")
    bias: float = Field(0.9, ge=0.0, le=1.0, description="P(majority tint) in train/val; test is balanced")
    val_size: int = Field(5000, ge=1, description="validation images taken from the training file")
    train_size: int | None = Field(
        None, ge=1, description="training images kept (seeded random subset); all when unset"
    )
    cache_dir: Path | None = Field(
        None,
        description="folder for the tinted, resized images, memory-mapped while training "
        "(worth it at large image_size); none: kept in memory",
    )


@register_source(FashionMnistColoredConfig)
def load_fashion_mnist_colored(cfg, *, seed: int) -> DataSplits:
    path = Path(cfg.path)
    train_x, train_y = read_idx(path / "train-images-idx3-ubyte"), read_idx(path / "train-labels-idx1-ubyte")
    test_x, test_y = read_idx(path / "t10k-images-idx3-ubyte"), read_idx(path / "t10k-labels-idx1-ubyte")
    rng = np.random.default_rng(seed)
    labels, test_labels = train_y.astype(np.int64), test_y.astype(np.int64)
    groups = _groups(labels, cfg.bias, rng)
    test_groups = np.zeros(len(test_labels), dtype=np.int64)
    for c in range(len(CLASSES)):  # balanced: alternate groups within each class
        rows = np.flatnonzero(test_labels == c)
        test_groups[rows[rng.permutation(len(rows)) % 2 == 1]] = 1
    cut = len(labels) - cfg.val_size
    if cut <= 0:
        raise EdgeKDError(
            f"data.val_size = {cfg.val_size}: must be smaller than the {len(labels)} training images"
        )
    if cfg.train_size is not None and cfg.train_size > cut:
        raise EdgeKDError(
            f"data.train_size = {cfg.train_size}: only {cut} training images are "
            f"left after the {cfg.val_size} of data.val_size; choose at most {cut}"
        )
    keep = np.sort(rng.permutation(cut)[: cfg.train_size]) if cfg.train_size is not None else np.arange(cut)
    # Drawn from its own stream, after the tints: test_size leaves every other draw as it was.
    test = kept_test_indices(
        cfg.test_size, test_labels, test_groups, seed=seed, what="the Fashion-MNIST test split"
    )

    def split(x, y, g) -> Split:
        return Split(images=_images(x, g, cfg.image_size, cfg.cache_dir), labels=y, groups=g)

    return DataSplits(
        train=split(train_x[keep], labels[keep], groups[keep]),
        val=split(train_x[cut:], labels[cut:], groups[cut:]),
        test=split(test_x[test], test_labels[test], test_groups[test]),
        class_names=list(CLASSES),
        group_names=["warm", "cool"],
        protected_attribute="colour tint",
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        description={
            "source": "fashion_mnist_colored",
            "synthetic": False,
            "path": str(path),
            "summary": f"Fashion-MNIST tinted warm or cool (tint as protected attribute), "
            f"train/val bias {cfg.bias}, balanced test"
            + (f" (a stratified {len(test)} of {len(test_labels)})" if cfg.test_size is not None else "")
            + f", {cfg.image_size}px",
        },
    )
