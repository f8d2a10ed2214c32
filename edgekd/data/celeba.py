"""``data.source: celeba``: CelebA (Liu et al., ICCV 2015) as published.

``root`` holds ``img_align_celeba/``, ``list_attr_celeba.txt`` (line 1 the image count, line 2
the 40 attribute names, then ``<file> <40 values of 1 or -1>`` separated by one or more spaces)
and ``list_eval_partition.txt`` (``<file> <0 train | 1 val | 2 test>``). The label is one
attribute (``target``, e.g. Smiling), the protected group another (``protected``, e.g. Male or
Young; groups ``not Male`` and ``Male``) or several (``protected: [Male, Young]``: the groups are
their intersections, ``Male=0,Young=0``, ``Male=0,Young=1``, ``Male=1,Young=0``,
``Male=1,Young=1``, 1 for CelebA's 1 and 0 for its -1; see :mod:`edgekd.data.groups`).
``undersample: true`` balances the target in the training split (seeded); ``max_per_split``
takes a seeded subset of each split for quick runs; ``test_size`` a seeded subset of the test
partition stratified over (target, group) cells, which it takes instead of ``max_per_split``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from edgekd.data._images import FileSourceConfig, describe_bad, normalisation, read_split
from edgekd.data._subset import kept_test_indices
from edgekd.data.groups import MAX_GROUPS, ProtectedAttributes, attribute_list, check_attribute_list
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits
from edgekd.errors import EdgeKDError

__all__ = ["load_celeba", "read_attributes", "read_partition"]


def read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Attribute names and ``{file: int8 array of 40 values}`` from ``list_attr_celeba.txt``."""
    if not path.is_file():
        raise EdgeKDError(f"data.root: {path} does not exist (CelebA's attribute file)")
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise EdgeKDError(f"{path}: expected a count line and a line of attribute names")
    names = lines[1].split()
    rows = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise EdgeKDError(
                f"{path} line {number}: expected a file name and {len(names)} values of 1 or -1"
            )
        rows[parts[0]] = np.array(parts[1:], dtype=np.int8)
    return names, rows


def read_partition(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise EdgeKDError(f"data.root: {path} does not exist (CelebA's partition file)")
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise EdgeKDError(f"{path} line {number}: expected '<file> <0|1|2>'")
        out[parts[0]] = int(parts[1])
    return out


class CelebAConfig(FileSourceConfig):
    """``data.source: celeba``: CelebA's aligned images and attribute files."""

    source: Literal["celeba"] = "celeba"
    target: str = Field("Smiling", description="the attribute predicted (one of list_attr_celeba.txt's 40)")
    protected: str | list[str] = Field(
        "Male", description="protected attribute, or a list: the groups are their intersections"
    )
    undersample: bool = Field(False, description="balance the target in the training split")
    max_per_split: int | None = Field(None, ge=1, description="seeded subset per split")

    @field_validator("protected")
    @classmethod
    def _attribute_list(cls, value: str | list[str]) -> str | list[str]:
        return check_attribute_list(value, "CelebA attribute")


def _protected(protected: str | list[str]) -> ProtectedAttributes:
    attributes = attribute_list(protected)
    if 2 ** len(attributes) > MAX_GROUPS:
        raise EdgeKDError(
            f"data.protected: {len(attributes)} attributes make {2 ** len(attributes)} "
            f"groups; at most {MAX_GROUPS} are allowed (up to 9 CelebA attributes)"
        )
    single = (f"not {attributes[0]}", attributes[0])
    return ProtectedAttributes(tuple(attributes), (("0", "1"),) * len(attributes), single_names=single)


@register_source(CelebAConfig)
def load_celeba(cfg, *, seed: int) -> DataSplits:
    names, attributes = read_attributes(cfg.root / "list_attr_celeba.txt")
    for key, value in [("target", cfg.target)] + [("protected", a) for a in attribute_list(cfg.protected)]:
        if value not in names:
            raise EdgeKDError(
                f"data.{key}: {value!r} is not a CelebA attribute; choose one of: {', '.join(names)}"
            )
    protected = _protected(cfg.protected)
    partition = read_partition(cfg.root / "list_eval_partition.txt")
    t, p = names.index(cfg.target), [names.index(a) for a in protected.names]
    rng = np.random.default_rng(seed)
    splits, bad = {}, {}
    for split, code in (("train", 0), ("val", 1), ("test", 2)):
        files = sorted(f for f, c in partition.items() if c == code and f in attributes)
        labels = np.array([attributes[f][t] == 1 for f in files], dtype=np.int64)
        groups = protected.combine(np.array([attributes[f][p] == 1 for f in files], dtype=np.int64))
        keep = np.arange(len(files))
        if split == "test" and cfg.test_size is not None:  # instead of max_per_split
            keep = kept_test_indices(cfg.test_size, labels, groups, seed=seed, what="CelebA's test partition")
        if split == "train" and cfg.undersample and len(files):
            counts = np.bincount(labels, minlength=2)
            keep = np.sort(
                np.concatenate(
                    [rng.choice(np.flatnonzero(labels == k), counts.min(), replace=False) for k in (0, 1)]
                )
            )
        if (
            cfg.max_per_split
            and len(keep) > cfg.max_per_split
            and not (split == "test" and cfg.test_size is not None)
        ):
            keep = np.sort(rng.choice(keep, cfg.max_per_split, replace=False))
        if len(keep) == 0:
            raise EdgeKDError(
                f"data: the CelebA {split} split is empty (list_eval_partition.txt code {code})"
            )
        splits[split], bad[split] = read_split(
            cfg,
            split,
            [cfg.root / "img_align_celeba" / files[i] for i in keep],
            labels[keep],
            groups[keep],
            listed_in=str(cfg.root / "list_eval_partition.txt"),
            named_in=f"list_eval_partition.txt code {code}",
        )
    mean, std = normalisation(cfg)
    return DataSplits(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        class_names=[f"not {cfg.target}", cfg.target],
        group_names=protected.group_names(),
        attributes=protected,
        protected_attribute=protected.label,
        mean=mean,
        std=std,
        description={
            "source": "celeba",
            "synthetic": False,
            "root": str(cfg.root),
            **describe_bad(bad, cfg),
            "summary": f"CelebA, target {cfg.target}, protected {protected.label}"
            + (" (groups: their intersections)" if protected.several else "")
            + ", "
            f"{cfg.image_size}px"
            + (", train undersampled to balance the target" if cfg.undersample else "")
            + (f", test: a stratified {cfg.test_size}" if cfg.test_size else ""),
        },
    )
