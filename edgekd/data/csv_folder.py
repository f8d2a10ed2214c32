"""``data.source: csv``: any folder of images with one CSV per split.

Each CSV has a header and (by default) the columns ``path`` (relative to ``root``), ``label``
and ``group``; the column names are configurable. Labels and groups may be names or integers:
names are mapped through ``classes`` / ``groups`` when the recipe lists them (their order is the
index order), otherwise through their sorted unique values in the training CSV.

Several protected attributes are several group columns (``group_column: [sex, age]``): the
groups are their intersections, named ``sex=f,age=old`` with each column's own values, in the
order of the columns and of each column's values (:mod:`edgekd.data.groups`); ``groups`` then
maps a column to its value names (``groups: {age: [young, old]}``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from edgekd.data._images import FileSourceConfig, describe_bad, normalisation, read_split
from edgekd.data.groups import MAX_GROUPS, ProtectedAttributes, attribute_list, check_attribute_list
from edgekd.data.labels import check_label, check_labels
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits
from edgekd.errors import EdgeKDError
from edgekd.paths import inside

__all__ = ["load_csv"]


Row = tuple[str, str, tuple[str, ...]]  # path, label, one value per group column


def _read(path: Path, columns: tuple[str, str, list[str]]) -> list[Row]:
    if not path.is_file():
        raise EdgeKDError(f"data: CSV file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in (columns[0], columns[1], *columns[2]) if c not in (reader.fieldnames or [])]
        if missing:
            raise EdgeKDError(f"{path}: no column {missing[0]!r}; columns are: "
                              f"{', '.join(reader.fieldnames or [])} (set data.path_column, "
                              "data.label_column, data.group_column)")
        rows = [(r[columns[0]], r[columns[1]].strip(), tuple(r[c].strip() for c in columns[2]))
                for r in reader]
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



class CsvConfig(FileSourceConfig):
    """``data.source: csv``: a folder of images and one CSV per split."""

    source: Literal["csv"] = "csv"
    train_csv: str = "train.csv"
    val_csv: str = "val.csv"
    test_csv: str = "test.csv"
    path_column: str = "path"
    label_column: str = "label"
    group_column: str | list[str] = Field(
        "group", description="group column, or a list: the groups are their intersections")
    classes: list[str] | None = Field(None, description="class names in index order")
    groups: list[str] | dict[str, list[str]] | None = Field(
        None, description="group names in index order (several columns: column -> value names)")
    protected_attribute: str | None = Field(
        None, description="the card's name for the attribute (default: the group column's name; "
                          "several columns: their names)")

    @field_validator("group_column")
    @classmethod
    def _attribute_list(cls, value: str | list[str]) -> str | list[str]:
        return check_attribute_list(value, "group column")

    @field_validator("groups")
    @classmethod
    def _groups_per_column(cls, groups, info: ValidationInfo):
        columns = attribute_list(info.data.get("group_column") or "group")
        if isinstance(groups, list) and len(columns) > 1:
            raise ValueError("with several group columns, map each column to its value names, e.g. "
                             f"{{{columns[0]}: [...]}}")
        if isinstance(groups, dict):
            unknown = [c for c in groups if c not in columns]
            if unknown:
                raise ValueError(f"{unknown[0]!r} is not a group column; the group columns are: "
                                 f"{', '.join(columns)}")
        return groups


def _given(cfg, column: str) -> list[str] | None:
    if isinstance(cfg.groups, dict):
        return cfg.groups.get(column)
    return cfg.groups


def _attributes(cfg, train: list[Row]) -> ProtectedAttributes:
    columns = attribute_list(cfg.group_column)
    values = tuple(tuple(_names([r[2][k] for r in train], _given(cfg, c))) for k, c in enumerate(columns))
    total = int(np.prod([len(v) for v in values]))
    if total > MAX_GROUPS:
        raise EdgeKDError(f"data.group_column: the columns {', '.join(columns)} make {total} groups "
                          f"(intersections of their values); at most {MAX_GROUPS} are allowed")
    if len(columns) == 1:
        return ProtectedAttributes((cfg.protected_attribute or columns[0],), values)
    return ProtectedAttributes(tuple(columns), values)


@register_source(CsvConfig)
def load_csv(cfg, *, seed: int) -> DataSplits:
    columns = (cfg.path_column, cfg.label_column, attribute_list(cfg.group_column))
    files = {"train": cfg.train_csv, "val": cfg.val_csv, "test": cfg.test_csv}
    rows = {split: _read(cfg.root / name, columns) for split, name in files.items()}
    class_names = _names([r[1] for r in rows["train"]], cfg.classes)
    attributes = _attributes(cfg, rows["train"])
    group_names = attributes.group_names()
    where = str(cfg.root / files["train"])  # the names, checked before any image is decoded
    check_labels(class_names, "class name", where)
    check_labels(group_names, "group name", where)
    if cfg.protected_attribute is not None:
        check_label(cfg.protected_attribute, "protected attribute (data.protected_attribute)", "recipe")
    for split, items in rows.items():  # every path of every split inside the root, before any decoding
        for n, item in enumerate(items, start=2):
            inside(item[0], cfg.root, listed_in=f"{cfg.root / files[split]} line {n}")
    splits, bad = {}, {}
    for split, items in rows.items():
        source = cfg.root / files[split]
        codes = np.stack([_index([r[2][k] for r in items], list(values),
                                 "group" if not attributes.several else f"group {columns[2][k]}", source)
                          for k, values in enumerate(attributes.values)], axis=1)
        splits[split], bad[split] = read_split(
            cfg, split, [Path(r[0]) for r in items],
            _index([r[1] for r in items], class_names, "label", source),
            attributes.combine(codes),
            listed_in=[f"{source} line {n}" for n in range(2, len(items) + 2)])
    mean, std = normalisation(cfg)
    return DataSplits(
        train=splits["train"], val=splits["val"], test=splits["test"],
        class_names=class_names, group_names=group_names, attributes=attributes,
        protected_attribute=cfg.protected_attribute or attributes.label,
        mean=mean, std=std,
        description={"source": "csv", "synthetic": False, "root": str(cfg.root), **describe_bad(bad),
                     "summary": f"Images from {cfg.root} listed in {', '.join(files.values())} "
                                f"({len(class_names)} classes, {len(group_names)} groups"
                                + (f": the intersections of {attributes.label}" if attributes.several else "")
                                + f", {cfg.image_size}px)"},
    )
