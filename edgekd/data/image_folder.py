"""``data.source: image_folder``: images sorted into one folder per class (the layout of
torchvision's ``ImageFolder``), with the protected groups in one CSV::

    root/
      train/<class>/<image>    .png .jpg .jpeg .bmp .webp .tif .tiff .ppm .pgm (any case, any
      val/<class>/<image>      depth below the class folder); val/ is optional
      test/<class>/<image>
      groups.csv               path (relative to root: train/cat/001.png), group column(s)

The classes are the folder names: ``classes`` lists them in index order and makes any other
folder an error; without it they are train's folders (those holding images), sorted, and the
build log lists them with their counts per split. Without ``val/``, ``val_size`` training images
(default a tenth) are carved out as the validation split, stratified over the (class, group)
cells and seeded; ``test_size`` keeps a stratified subset of ``test/``. Both are chosen before
any image is decoded.

Groups come from ``groups_csv`` by path, through the ``csv`` source's machinery (``group_column``,
several columns as intersections, ``groups`` for their names, the same checks). An image without
a row is an error naming it: leaving it out would shift the group balance nobody sees. Rows that
name no image, and files in the split folders that are not images in a class folder, are one
warning line each. Missing or corrupt image files are counted as in every file source
(``max_bad_fraction``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgekd.data._images import describe_bad, normalisation, read_split
from edgekd.data._labelled import (
    LabelledConfig,
    census_lines,
    check_names,
    group_codes,
    index_values,
    listing,
    protected_attributes,
    read_rows,
)
from edgekd.data._subset import VAL_STREAM, kept_test_indices, stratified_subset
from edgekd.data.groups import attribute_list
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits
from edgekd.errors import EdgeKDError

__all__ = ["load_image_folder", "IMAGE_SUFFIXES"]

# What torchvision's ImageFolder reads (Pillow decodes each).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SPLITS = ("train", "val", "test")


class ImageFolderConfig(LabelledConfig):
    """``data.source: image_folder``: ``root/<split>/<class>/<image>`` and a CSV of groups."""

    source: Literal["image_folder"] = "image_folder"
    groups_csv: str = Field(
        "groups.csv", description="CSV under root: each image's path (relative to root) and group"
    )
    val_size: int | None = Field(
        None,
        ge=1,
        description="without a val/ folder: training images carved out as the "
        "validation split (stratified, seeded); default a tenth",
    )


def _listing(root: Path, split: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``(path relative to root, class folder)`` of every image of a split folder, sorted, and
    the other files found there (hidden files and folders are passed over)."""
    images, others = [], []
    for entry in sorted((root / split).iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            others.append(f"{split}/{entry.name}")
            continue
        for dirpath, dirnames, filenames in os.walk(entry):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(f for f in filenames if not f.startswith(".")):
                relative = Path(dirpath, name).relative_to(root).as_posix()
                if name.lower().endswith(IMAGE_SUFFIXES):
                    images.append((relative, entry.name))
                else:
                    others.append(relative)
    return sorted(images), others


def _group_rows(path: Path, cfg, columns: list[str]) -> dict[str, tuple[str, ...]]:
    """The group values of each path of ``groups_csv`` (normalised, relative to root)."""
    table: dict[str, tuple[str, ...]] = {}
    for line, (name, _, values) in enumerate(
        read_rows(path, path_column=cfg.path_column, label_column=None, group_columns=columns), start=2
    ):
        key = Path(os.path.normpath(name.strip())).as_posix()
        if table.get(key, values) != values:
            raise EdgeKDError(
                f"{path} line {line}: {key!r} is listed again with other group "
                f"values ({', '.join(values)} after {', '.join(table[key])})"
            )
        table[key] = values
    return table


@register_source(ImageFolderConfig)
def load_image_folder(cfg, *, seed: int) -> DataSplits:
    present = [split for split in SPLITS if (cfg.root / split).is_dir()]
    for split in ("train", "test"):
        if split not in present:
            raise EdgeKDError(
                f"data.root: {cfg.root} has no {split}/ folder; the image_folder "
                "layout is root/train/<class>/<image>, root/test/<class>/<image> "
                "(root/val/ optional) and a groups CSV"
            )
    if "val" in present and cfg.val_size is not None:
        raise EdgeKDError(
            f"data.val_size: {cfg.root} has a val/ folder, which is the validation "
            "split; remove data.val_size or the folder"
        )
    listed, others = {}, []
    for split in present:
        listed[split], found = _listing(cfg.root, split)
        others += found
        if not listed[split]:
            raise EdgeKDError(
                f"{cfg.root / split}: no images in class folders "
                f"({split}/<class>/<image>, {' '.join(IMAGE_SUFFIXES)})"
            )
    columns = attribute_list(cfg.group_column)
    table = _group_rows(cfg.root / cfg.groups_csv, cfg, columns)
    unlisted = [path for split in present for path, _ in listed[split] if path not in table]
    if unlisted:
        total = sum(len(items) for items in listed.values())
        raise EdgeKDError(
            f"{cfg.root / cfg.groups_csv}: no row for {len(unlisted)} of the {total} "
            f"images: {listing(unlisted, 5)}; give every image a row "
            f"({cfg.path_column} relative to root, {', '.join(columns)})"
        )
    images = {path for items in listed.values() for path, _ in items}
    orphans = [path for path in table if path not in images]

    class_names = list(cfg.classes) if cfg.classes else sorted({c for _, c in listed["train"]})
    attributes = protected_attributes(cfg, [table[path] for path, _ in listed["train"]])
    group_names = attributes.group_names()
    check_names(cfg, class_names, group_names, str(cfg.root / "train"))
    coded = {}  # every class folder and group checked before any image is decoded
    for split in present:
        labels = index_values(
            [c for _, c in listed[split]],
            class_names,
            source=cfg.root / split,
            what="class folders",
            unit="images",
            joiner="in",
            by_index=False,
            among="data.classes" if cfg.classes else "the class folders of train/",
        )
        groups = group_codes(
            cfg,
            attributes,
            [table[path] for path, _ in listed[split]],
            source=cfg.root / cfg.groups_csv,
            found_in="train/'s images",
            unit="images",
        )
        coded[split] = [path for path, _ in listed[split]], labels, groups

    notes, named = [], {split: f"{split}/" for split in present}
    folder = {split: split for split in SPLITS}
    if "val" not in present:
        paths, labels, groups = coded["train"]
        size = cfg.val_size if cfg.val_size is not None else max(1, len(paths) // 10)
        if size >= len(paths):
            raise EdgeKDError(
                f"data.val_size = {size}: train/ has {len(paths)} images; carve fewer, or add a val/ folder"
            )
        val = stratified_subset(labels, groups, size, seed=seed, stream=VAL_STREAM)
        rest = np.setdiff1d(np.arange(len(paths)), val)
        coded["val"] = [paths[i] for i in val], labels[val], groups[val]
        coded["train"] = [paths[i] for i in rest], labels[rest], groups[rest]
        named["val"], folder["val"] = "carved from train/", "train"
        notes.append(f"val: {size} images carved from train/")
    paths, labels, groups = coded["test"]
    keep = kept_test_indices(cfg.test_size, labels, groups, seed=seed, what="test/")
    coded["test"] = [paths[i] for i in keep], labels[keep], groups[keep]
    if cfg.test_size is not None:
        notes.append(f"test: a stratified {len(keep)} of {len(paths)}")

    splits, bad = {}, {}
    for split in SPLITS:
        paths, labels, groups = coded[split]
        splits[split], bad[split] = read_split(
            cfg,
            split,
            [Path(p) for p in paths],
            labels,
            groups,
            listed_in=str(cfg.root / folder[split]),
            named_in=named[split],
        )
    described = describe_bad(bad, cfg)
    warnings = described["warnings"]
    if others:
        warnings.append(
            f"data (image_folder): {len(others)} files not read (not an image in a class "
            f"folder; images are {' '.join(IMAGE_SUFFIXES)}): {listing(others, 5)}"
        )
    if orphans:
        warnings.append(
            f"data (image_folder): {len(orphans)} rows of {cfg.groups_csv} name no image "
            f"under {cfg.root}: {listing(orphans, 5)}"
        )
    warnings += census_lines(
        cfg,
        "image_folder",
        class_names=class_names,
        group_names=group_names,
        splits=splits,
        classes_found_in="train/'s class folders",
        groups_found_in=cfg.groups_csv,
    )
    mean, std = normalisation(cfg)
    return DataSplits(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        class_names=class_names,
        group_names=group_names,
        attributes=attributes,
        protected_attribute=cfg.protected_attribute or attributes.label,
        mean=mean,
        std=std,
        description={
            "source": "image_folder",
            "synthetic": False,
            "root": str(cfg.root),
            **described,
            "summary": f"Images from {cfg.root}/<split>/<class>/ with groups from "
            f"{cfg.groups_csv} ({len(class_names)} classes, {len(group_names)} "
            "groups"
            + (f": the intersections of {attributes.label}" if attributes.several else "")
            + f", {cfg.image_size}px"
            + "".join(f", {n}" for n in notes)
            + ")",
        },
    )
