"""Decode image files once into a uint8 array cache, shared by the file-based sources.

Decoding thousands of JPEGs on every build is slow, so a split's images are decoded (Pillow),
optionally cropped to a box and resized to ``size x size``, chunk by chunk, into one ``.npy``
file under ``data.cache_dir`` (:mod:`edgekd.data.cache`), named by a hash of everything that
determines it (:func:`fingerprint`: the files' paths, sizes and modification times, the crop
boxes, the size and the decoder). Later builds, other recipes and the other ranks of a torchrun
job memory-map it, and batches are read from the map (:mod:`edgekd.data.rows`), so a build's
memory does not grow with the data set. Files that are missing or do not decode are listed in
the cache's index, so a cached load reports them too, and are left out of the split or stop the
build (``data.on_bad_image``). Left out, they are named in one warning line per split (how many
are missing, how many do not decode, the first few of each), and a split losing more than
``data.max_bad_fraction`` of its files stops the build with one line.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from pydantic import Field, PositiveFloat, ValidationInfo, field_validator, model_validator

from edgekd.config import resolve_path
from edgekd.data._subset import SizedTestConfig
from edgekd.data.cache import cached_images, remove_orphans
from edgekd.data.splits import Split
from edgekd.errors import EdgeKDError
from edgekd.paths import inside

__all__ = [
    "FileSourceConfig",
    "LoadedImages",
    "load_images",
    "default_cache_dir",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "normalisation",
    "read_split",
    "BadFiles",
    "describe_bad",
    "fingerprint",
    "remove_orphans",
    "DEFAULT_MAX_BAD_FRACTION",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Box = tuple[float, float, float, float]  # x, y, w, h in pixels


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


# A split may lose at most this share of its files to missing or undecodable images. The few
# broken files of a large crawl (6 of 2400 is 0.25%) build, each split with a warning line naming
# them; a wrong root, a half-copied archive or a broken mount (tens of percent) stops the build
# before training, rather than training on a remnant whose class and group balance nobody chose.
DEFAULT_MAX_BAD_FRACTION = 0.01


class FileSourceConfig(SizedTestConfig):
    """What every file-based source shares: a root folder, the size, the decode cache."""

    root: Path = Field(description="dataset folder, relative to the recipe's folder")
    image_size: int = Field(224, ge=16, le=1024, description="images are resized to this height and width")
    cache_dir: Path | None = Field(
        None,
        description="folder of the decoded-image cache, memory-mapped while training "
        "(default $EDGEKD_CACHE or ~/.cache/edgekd)",
    )
    workers: int = Field(0, ge=0, le=64, description="image-decoding threads (0: one per core, max 8)")
    on_bad_image: Literal["skip", "error"] = Field(
        "skip", description="a missing or corrupt image: left out and counted on the card, or fatal"
    )
    max_bad_fraction: float = Field(
        DEFAULT_MAX_BAD_FRACTION,
        ge=0.0,
        le=1.0,
        description="largest share of a split's files that may be missing or corrupt (left out, "
        "with a warning); more stops the build",
    )
    max_image_pixels: int = Field(
        89_478_485, ge=1, description="an image with more pixels is a bad image (decompression bombs)"
    )
    mean: tuple[float, float, float] | None = Field(None, description="per-channel mean (ImageNet's)")
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = Field(
        None, description="per-channel std (ImageNet's)"
    )

    @field_validator("root")
    @classmethod
    def _root_exists(cls, path: Path, info: ValidationInfo) -> Path:
        return resolve_path(path, info, folder=True)

    @model_validator(mode="after")
    def _default_cache(self):
        if self.cache_dir is None:
            object.__setattr__(self, "cache_dir", default_cache_dir())
        return self


def normalisation(cfg) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The recipe's ``data.mean`` / ``data.std``, ImageNet's where it gives none."""
    return tuple(cfg.mean or IMAGENET_MEAN), tuple(cfg.std or IMAGENET_STD)


DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default limit (about 9459 x 9459)


def _decode(path: Path, size: int, box: Box | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only: the size is known before decoding
            if image.width * image.height > max_pixels:
                raise EdgeKDError(
                    f"{path}: {image.width} x {image.height} pixels, above "
                    f"data.max_image_pixels {max_pixels}; raise it in the recipe to "
                    "read images this large"
                )
            image = image.convert("RGB")
            if box is not None:
                x, y, w, h = box
                right, bottom = min(image.width, x + max(w, 1)), min(image.height, y + max(h, 1))
                image = image.crop((max(0, int(x)), max(0, int(y)), int(right), int(bottom)))
            return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    except FileNotFoundError:
        raise EdgeKDError(f"{path}: image file not found") from None
    except Image.DecompressionBombError:  # Pillow's own check, at twice its limit, fired first
        raise EdgeKDError(
            f"{path}: more pixels than data.max_image_pixels {max_pixels} (a "
            "decompression bomb?); raise it in the recipe to read images this large"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise EdgeKDError(f"{path}: cannot decode this image ({err.__class__.__name__})") from None


def _allow_pixels(max_pixels: int) -> None:
    """Let Pillow open what the recipe allows: its own limit is global, so it is only ever raised
    (to the recipe's ``data.max_image_pixels``), and edgekd checks the recipe's limit itself."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


class LoadedImages(NamedTuple):
    """A split's decoded images and the files that could not be read."""

    images: np.ndarray  # (N, size, size, 3) uint8, the good images only
    keep: np.ndarray  # indices of ``paths`` that decoded, in order
    bad: list[str]  # one line per file that did not decode


def _decode_or_reason(
    path: Path, size: int, box: Box | None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray | str:
    try:
        return _decode(path, size, box, max_pixels)
    except EdgeKDError as err:
        return str(err)


def _decode_all(
    paths: list[Path],
    boxes: list[Box | None],
    size: int,
    out: np.ndarray,
    pool: ThreadPoolExecutor,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[tuple[int, str]]:
    """Decode into ``out`` on ``pool``'s threads (Pillow releases the GIL while decoding, so
    threads scale); return the (index, reason) of every file that failed."""
    bad = []
    results = pool.map(_decode_or_reason, paths, [size] * len(paths), boxes, [max_pixels] * len(paths))
    for i, result in enumerate(results):
        if isinstance(result, str):
            bad.append((i, result))
            out[i] = 0
        else:
            out[i] = result
    return bad


def fingerprint(paths: list[Path], boxes: list[Box | None], size: int, max_pixels: int) -> str:
    """What determines a split's decoded pixels, hashed: each file's resolved path, size and
    modification time (ns), its crop box, the size, the pixel limit and the decoder (Pillow's
    version, RGB, bilinear). A file's content is not read: hashing a data set on every build
    would cost as much I/O as decoding it; a file rewritten with the same size and modification
    time (``touch -r``, an ``rsync -t`` of other content) is not noticed."""
    import PIL

    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {
                "size": size,
                "max_pixels": max_pixels,
                "pillow": PIL.__version__,
                "mode": "RGB",
                "resample": "bilinear",
            }
        ).encode()
    )
    for path, box in zip(paths, boxes):
        try:
            stat = path.stat()
            signature = [stat.st_size, stat.st_mtime_ns]
        except FileNotFoundError:
            signature = None
        digest.update(json.dumps([str(path.resolve()), signature, box]).encode())
    return digest.hexdigest()


def load_images(
    paths: list[Path],
    *,
    size: int,
    cache_dir: Path | None,
    boxes: list[Box | None] | None = None,
    workers: int = 0,
    on_bad_image: str = "skip",
    split: str = "",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImages:
    """The images of ``paths`` (cropped to ``boxes``), from the cache when it holds them, else
    decoded by ``workers`` threads (0: one per core, at most 8), chunk by chunk, and cached
    (:mod:`edgekd.data.cache`): the images come back memory-mapped. ``cache_dir=None`` decodes
    into memory.

    A file that is missing or does not decode is left out and named in ``bad``
    (``on_bad_image: skip``) or ends the load with its one-line error (``error``). The cache
    remembers the bad files, so a later build reports them without decoding again.
    """
    boxes = boxes or [None] * len(paths)
    _allow_pixels(max_pixels)
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:

        def fill(start: int, stop: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
            out = np.empty((stop - start, size, size, 3), np.uint8)
            bad = _decode_all(paths[start:stop], boxes[start:stop], size, out, pool, max_pixels)
            return out, [(start + i, reason) for i, reason in bad]

        if cache_dir is None:
            images, bad = fill(0, len(paths))
            if bad:
                images = images[np.setdiff1d(np.arange(len(paths)), [i for i, _ in bad])]
        else:
            images, bad = cached_images(
                Path(cache_dir),
                fingerprint(paths, boxes, size, max_pixels),
                count=len(paths),
                size=size,
                fill=fill,
            )
    return _select(images, len(paths), bad, on_bad_image, split)


def _select(
    images: np.ndarray, count: int, bad: list[tuple[int, str]], on_bad_image: str, split: str
) -> LoadedImages:
    """``images`` hold the good files' rows only; ``keep`` says which of the ``count`` files."""
    if bad and on_bad_image == "error":
        more = f" (and {len(bad) - 1} more bad files in {split or 'this split'})" if len(bad) > 1 else ""
        raise EdgeKDError(f"{bad[0][1]}{more}; set data.on_bad_image: skip to leave such files out")
    keep = np.setdiff1d(np.arange(count), [i for i, _ in bad]) if bad else np.arange(count)
    return LoadedImages(images, keep, [reason for _, reason in bad])


@dataclass(frozen=True)
class BadFiles:
    """The files of one split that were left out: missing ones and ones that did not decode
    (named as the source lists them), and the one-line reason for each."""

    split: str
    total: int  # files the split listed
    missing: list[str]
    unreadable: list[str]
    reasons: list[str]
    named_in: str = ""  # where the split's files are listed, for the lines

    SHOWN = 3  # names per kind in a line

    def __len__(self) -> int:
        return len(self.missing) + len(self.unreadable)

    @property
    def fraction(self) -> float:
        return len(self) / self.total if self.total else 0.0

    def _where(self) -> str:
        return f"data: {self.split} split" + (f" ({self.named_in})" if self.named_in else "")

    def _kinds(self) -> str:
        def named(kind: str, names: list[str]) -> str:
            unique = list(dict.fromkeys(names))  # person crops of one file: named once
            more = f" and {len(unique) - self.SHOWN} more" if len(unique) > self.SHOWN else ""
            return f"{len(names)} {kind} ({', '.join(unique[: self.SHOWN])}{more})"

        return ", ".join(
            named(kind, names)
            for kind, names in (("missing", self.missing), ("unreadable", self.unreadable))
            if names
        )

    def warning(self, max_fraction: float) -> str:
        """The build log's line for a split that lost files, within ``max_fraction``."""
        return (
            f"{self._where()}: {len(self)} of {self.total} image files left out "
            f"({100 * self.fraction:.3g}%; data.max_bad_fraction {max_fraction:g}): "
            f"{self._kinds()}"
        )

    def error(self, max_fraction: float) -> str:
        return (
            f"{self._where()}: {len(self)} of {self.total} image files are missing or "
            f"unreadable ({100 * self.fraction:.3g}%), above data.max_bad_fraction "
            f"{max_fraction:g}: {self._kinds()}; fix or remove them, or raise "
            "data.max_bad_fraction"
        )


def _shown_name(path: Path, root: Path) -> str:
    path = Path(path)
    return os.path.relpath(path, root) if path.is_absolute() else str(path)


def read_split(
    cfg,
    split: str,
    paths: list[Path],
    labels: np.ndarray,
    groups: np.ndarray,
    boxes: list[Box | None] | None = None,
    listed_in: str | list[str] | None = None,
    named_in: str = "",
) -> tuple[Split, BadFiles]:
    """A :class:`Split` of a file-based source under the recipe's image settings (size, cache,
    workers, ``on_bad_image``, ``max_image_pixels``, ``max_bad_fraction``), with the samples
    whose file is missing or did not decode left out; also those files (:class:`BadFiles`,
    ``named_in``: where the split's files are listed, for its lines).

    Every path must resolve (symlinks too) inside ``cfg.root``; one that does not stops the load
    with one line naming it, where it was listed (``listed_in``: one label, or one per path) and
    the root, before any file is opened. A split that loses more than ``cfg.max_bad_fraction``
    of its files stops the load with one line naming them; the check runs on the cache's record
    of bad files too, so a cached load reports and refuses exactly what a fresh decode would.
    """
    where = listed_in if listed_in is not None else f"data ({split} split)"
    given = list(paths)
    paths = [
        inside(path, cfg.root, listed_in=where if isinstance(where, str) else where[i])
        for i, path in enumerate(paths)
    ]
    loaded = load_images(
        paths,
        size=cfg.image_size,
        cache_dir=cfg.cache_dir,
        boxes=boxes,
        workers=cfg.workers,
        on_bad_image=cfg.on_bad_image,
        split=split,
        max_pixels=getattr(cfg, "max_image_pixels", DEFAULT_MAX_PIXELS),
    )
    failed = np.setdiff1d(np.arange(len(paths)), loaded.keep)  # in index order, as loaded.bad
    missing = [i for i in failed.tolist() if not paths[i].exists()]
    unreadable = [i for i in failed.tolist() if paths[i].exists()]
    bad = BadFiles(
        split,
        len(paths),
        [_shown_name(given[i], cfg.root) for i in missing],
        [_shown_name(given[i], cfg.root) for i in unreadable],
        list(loaded.bad),
        named_in,
    )
    max_fraction = getattr(cfg, "max_bad_fraction", DEFAULT_MAX_BAD_FRACTION)
    if bad.fraction > max_fraction:
        raise EdgeKDError(bad.error(max_fraction))
    if len(loaded.keep) == 0:
        raise EdgeKDError(f"data: no image of the {split} split could be read; first: {loaded.bad[0]}")
    keep = loaded.keep
    split_data = Split(
        images=loaded.images,
        labels=np.asarray(labels, np.int64)[keep],
        groups=np.asarray(groups, np.int64)[keep],
    )
    return split_data, bad


def describe_bad(bad: dict[str, BadFiles], cfg) -> dict:
    """The card's record of skipped files (a count per split and the first few reasons) and
    the build log's ``warnings``: one line per split that lost files."""
    reasons = [reason for split in bad.values() for reason in split.reasons]
    max_fraction = getattr(cfg, "max_bad_fraction", DEFAULT_MAX_BAD_FRACTION)
    return {
        "skipped_bad_images": {split: len(items) for split, items in bad.items()},
        "skipped_bad_image_examples": reasons[:5],
        "warnings": [items.warning(max_fraction) for items in bad.values() if len(items)],
    }
