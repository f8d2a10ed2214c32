"""``data.source: csv``: any folder of images with one CSV per split.

Each CSV has a header and (by default) the columns ``path`` (relative to ``root``), ``label``
and ``group``; the column names are configurable. Labels and groups may be names or integers:
names are mapped through ``classes`` / ``groups`` when the recipe lists them (their order is the
index order), otherwise through their sorted unique values in the training CSV.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgekd.data._images import FileData, describe_bad, normalisation, read_split
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits
from edgekd.errors import EdgeKDError
from edgekd.paths import inside

__all__ = ["load_csv"]


def _read(path: Path, columns: tuple[str, str, str]) -> list[tuple[str, str, str]]:
    if not path.is_file():
        raise EdgeKDError(f"data: CSV file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise EdgeKDError(f"{path}: no column {missing[0]!r}; columns are: "
                              f"{', '.join(reader.fieldnames or [])} (set data.path_column, "
                              "data.label_column, data.group_column)")
        rows = [(r[columns[0]], r[columns[1]].strip(), r[columns[2]].strip()) for r in reader]
    if not rows:
        raise EdgeKDError(f"{path}: the CSV has no rows")
    return rows


def _index(values: list[str], names: list[str], what: str, source: Path) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(names)}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if value in lookup:
            out[i] = lookup[value]
        elif value.lstrip("-").isdigit() and 0 <= int(value) < len(names):
            out[i] = int(value)
        else:
            raise EdgeKDError(f"{source}: {what} {value!r} is not one of: {', '.join(names)}")
    return out


def _names(values: list[str], given: list[str] | None) -> list[str]:
    if given:
        return list(given)
    if all(v.lstrip("-").isdigit() for v in values):
        return [str(i) for i in range(max(int(v) for v in values) + 1)]
    return sorted(set(values))



class CsvData(FileData):
    """``data.source: csv``: a folder of images and one CSV per split."""

    source: Literal["csv"] = "csv"
    train_csv: str = "train.csv"
    val_csv: str = "val.csv"
    test_csv: str = "test.csv"
    path_column: str = "path"
    label_column: str = "label"
    group_column: str = "group"
    classes: list[str] | None = Field(None, description="class names in index order")
    groups: list[str] | None = Field(None, description="group names in index order")
    protected_attribute: str = "group"


@register_source(CsvData)
def load_csv(cfg, *, seed: int) -> DataSplits:
    columns = (cfg.path_column, cfg.label_column, cfg.group_column)
    files = {"train": cfg.train_csv, "val": cfg.val_csv, "test": cfg.test_csv}
    rows = {split: _read(cfg.root / name, columns) for split, name in files.items()}
    class_names = _names([r[1] for r in rows["train"]], cfg.classes)
    group_names = _names([r[2] for r in rows["train"]], cfg.groups)
    for split, items in rows.items():  # every path of every split inside the root, before any decoding
        for n, item in enumerate(items, start=2):
            inside(item[0], cfg.root, listed_in=f"{cfg.root / files[split]} line {n}")
    splits, bad = {}, {}
    for split, items in rows.items():
        source = cfg.root / files[split]
        splits[split], bad[split] = read_split(
            cfg, split, [Path(r[0]) for r in items],
            _index([r[1] for r in items], class_names, "label", source),
            _index([r[2] for r in items], group_names, "group", source),
            listed_in=[f"{source} line {n}" for n in range(2, len(items) + 2)])
    mean, std = normalisation(cfg)
    return DataSplits(
        train=splits["train"], val=splits["val"], test=splits["test"],
        class_names=class_names, group_names=group_names,
        protected_attribute=cfg.protected_attribute,
        mean=mean, std=std,
        description={"source": "csv", "synthetic": False, "root": str(cfg.root), **describe_bad(bad),
                     "summary": f"Images from {cfg.root} listed in {', '.join(files.values())} "
                                f"({len(class_names)} classes, {len(group_names)} groups, "
                                f"{cfg.image_size}px)"},
    )
