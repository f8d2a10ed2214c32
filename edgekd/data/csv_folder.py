"""``data.source: csv``: any folder of images with one CSV per split.

Each CSV has a header and (by default) the columns ``path`` (relative to ``root``), ``label``
and ``group``; the column names are configurable. Labels and groups may be names or integers:
names are mapped through ``classes`` / ``groups`` when the recipe lists them (their order is the
index order), otherwise through their sorted unique values in the training CSV. A label or
group outside the declared names is one error line naming each such value with its count and
the CSV; without declared names, the build log lists the names found with their counts per split
(a typo'd label is then a visible class of a few images). ``test_size`` keeps a seeded subset of
``test.csv`` stratified over the (class, group) cells, chosen before any image is decoded.

Several protected attributes are several group columns (``group_column: [sex, age]``): the
groups are their intersections, named ``sex=f,age=old`` with each column's own values, in the
order of the columns and of each column's values (:mod:`edgekd.data.groups`); ``groups`` then
maps a column to its value names (``groups: {age: [young, old]}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edgekd.data._images import describe_bad, normalisation, read_split
from edgekd.data._labelled import (
    LabelledConfig,
    census_lines,
    check_names,
    group_codes,
    index_values,
    protected_attributes,
    read_rows,
    value_names,
)
from edgekd.data._subset import kept_test_indices
from edgekd.data.groups import attribute_list
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits
from edgekd.paths import inside

__all__ = ["load_csv"]


class CsvConfig(LabelledConfig):
    """``data.source: csv``: a folder of images and one CSV per split."""

    source: Literal["csv"] = "csv"
    train_csv: str = Field("train.csv", description="CSV of the training split, under root")
    val_csv: str = Field("val.csv", description="CSV of the validation split, under root")
    test_csv: str = Field("test.csv", description="CSV of the test split, under root")
    label_column: str = Field("label", description="column of the class (a name or an index)")


@register_source(CsvConfig)
def load_csv(cfg, *, seed: int) -> DataSplits:
    columns = attribute_list(cfg.group_column)
    files = {"train": cfg.train_csv, "val": cfg.val_csv, "test": cfg.test_csv}
    rows = {
        split: read_rows(
            cfg.root / name, path_column=cfg.path_column, label_column=cfg.label_column, group_columns=columns
        )
        for split, name in files.items()
    }
    class_names = value_names([r[1] for r in rows["train"]], cfg.classes)
    attributes = protected_attributes(cfg, [r[2] for r in rows["train"]])
    group_names = attributes.group_names()
    check_names(cfg, class_names, group_names, str(cfg.root / files["train"]))
    lines = {split: list(range(2, len(items) + 2)) for split, items in rows.items()}
    for split, items in rows.items():  # every path of every split inside the root, before any decoding
        for n, item in zip(lines[split], items):
            inside(item[0], cfg.root, listed_in=f"{cfg.root / files[split]} line {n}")
    coded = {}  # every label and group of every split checked before any image is decoded
    for split, items in rows.items():
        source = cfg.root / files[split]
        labels = index_values(
            [r[1] for r in items],
            class_names,
            what="labels",
            source=source,
            among="data.classes" if cfg.classes else f"the labels of {files['train']}",
        )
        groups = group_codes(cfg, attributes, [r[2] for r in items], source=source, found_in=files["train"])
        coded[split] = labels, groups
    keep = kept_test_indices(cfg.test_size, *coded["test"], seed=seed, what=files["test"])
    total_test = len(rows["test"])
    rows["test"] = [rows["test"][i] for i in keep]
    lines["test"] = [lines["test"][i] for i in keep]
    coded["test"] = coded["test"][0][keep], coded["test"][1][keep]
    splits, bad = {}, {}
    for split, items in rows.items():
        source = cfg.root / files[split]
        splits[split], bad[split] = read_split(
            cfg,
            split,
            [Path(r[0]) for r in items],
            *coded[split],
            listed_in=[f"{source} line {n}" for n in lines[split]],
            named_in=files[split],
        )
    described = describe_bad(bad, cfg)
    described["warnings"] += census_lines(
        cfg,
        "csv",
        class_names=class_names,
        group_names=group_names,
        splits=splits,
        classes_found_in=files["train"],
        groups_found_in=files["train"],
    )
    mean, std = normalisation(cfg)
    subset = f", test: a stratified {len(keep)} of {total_test}" if cfg.test_size is not None else ""
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
            "source": "csv",
            "synthetic": False,
            "root": str(cfg.root),
            **described,
            "summary": f"Images from {cfg.root} listed in {', '.join(files.values())} "
            f"({len(class_names)} classes, {len(group_names)} groups"
            + (f": the intersections of {attributes.label}" if attributes.several else "")
            + f", {cfg.image_size}px{subset})",
        },
    )
