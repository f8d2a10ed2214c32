"""What the ``csv`` and ``image_folder`` sources share: the recipe keys naming classes and group
columns, reading a CSV of paths and group values, and checking the values read against the names.

A label or group value outside the declared names (``data.classes``, ``data.groups``) is one
error line naming every such value with its count and the file or folder it came from; with no
declared names the training split's values are the names, and one warning line lists them with
their counts per split, so a typo'd fifth class is seen in the build log rather than trained.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from edgekd.data._images import FileSourceConfig
from edgekd.data.groups import MAX_GROUPS, ProtectedAttributes, attribute_list, check_attribute_list
from edgekd.data.labels import check_label, check_labels
from edgekd.errors import EdgeKDError

__all__ = [
    "LabelledConfig",
    "Row",
    "read_rows",
    "value_names",
    "protected_attributes",
    "index_values",
    "group_codes",
    "check_names",
    "census_line",
    "census_lines",
    "listing",
]

Row = tuple[str, str, tuple[str, ...]]  # path, label ("" when the file has none), group values

SHOWN_NAMES = 20  # names listed in a line before "and N more"
CENSUS_NAMES = 30  # classes a census line lists (the rarest, when there are more)


class LabelledConfig(FileSourceConfig):
    """Class names, group columns and their value names, shared by ``csv`` and ``image_folder``."""

    path_column: str = Field("path", description="column of the image path, relative to root")
    group_column: str | list[str] = Field(
        "group", description="group column, or a list: the groups are their intersections"
    )
    classes: list[str] | None = Field(
        None, description="class names in index order; any other label is an error"
    )
    groups: list[str] | dict[str, list[str]] | None = Field(
        None, description="group names in index order (several columns: column -> value names)"
    )
    protected_attribute: str | None = Field(
        None,
        description="the card's name for the attribute (default: the group column's name; "
        "several columns: their names)",
    )

    @field_validator("group_column")
    @classmethod
    def _attribute_list(cls, value: str | list[str]) -> str | list[str]:
        return check_attribute_list(value, "group column")

    @field_validator("groups")
    @classmethod
    def _groups_per_column(cls, groups, info: ValidationInfo):
        columns = attribute_list(info.data.get("group_column") or "group")
        if isinstance(groups, list) and len(columns) > 1:
            raise ValueError(
                "with several group columns, map each column to its value names, e.g. "
                f"{{{columns[0]}: [...]}}"
            )
        if isinstance(groups, dict):
            unknown = [c for c in groups if c not in columns]
            if unknown:
                raise ValueError(
                    f"{unknown[0]!r} is not a group column; the group columns are: {', '.join(columns)}"
                )
        return groups

    def groups_declared(self) -> bool:
        """Every group column's value names are listed in the recipe."""
        if isinstance(self.groups, dict):
            return all(c in self.groups for c in attribute_list(self.group_column))
        return bool(self.groups)


def listing(names: list[str], limit: int = SHOWN_NAMES) -> str:
    """``a, b, c`` or ``a, b, ... and 980 more``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_rows(
    path: Path, *, path_column: str, label_column: str | None, group_columns: list[str]
) -> list[Row]:
    """The rows of a CSV with a header: path, label (``""`` without ``label_column``) and one
    value per group column, each stripped of surrounding spaces but the path."""
    if not path.is_file():
        raise EdgeKDError(f"data: CSV file {str(path)!r} does not exist")
    columns = [path_column, *([label_column] if label_column else []), *group_columns]
    keys = "data.path_column, " + ("data.label_column, " if label_column else "") + "data.group_column"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise EdgeKDError(
                    f"{path}: no column {missing[0]!r}; columns are: "
                    f"{', '.join(reader.fieldnames or [])} (set {keys})"
                )
            rows = []
            for r in reader:
                if any(r[c] is None for c in columns):  # a row shorter than the header
                    raise EdgeKDError(
                        f"{path} line {reader.line_num}: fewer cells than the header; "
                        f"{', '.join(columns)} are needed"
                    )
                rows.append(
                    (
                        r[path_column],
                        r[label_column].strip() if label_column else "",
                        tuple(r[c].strip() for c in group_columns),
                    )
                )
    except (UnicodeDecodeError, csv.Error) as err:
        raise EdgeKDError(f"{path}: not a UTF-8 CSV file ({err.__class__.__name__}: {err})") from None
    if not rows:
        raise EdgeKDError(f"{path}: the CSV has no rows")
    return rows


def value_names(values: list[str], given: list[str] | None) -> list[str]:
    """The names of a column: ``given`` when the recipe lists them, else ``0..max`` when every
    value is an integer, else the sorted distinct values."""
    if given:
        return list(given)
    if all(v.lstrip("-").isdigit() for v in values):
        return [str(i) for i in range(max(int(v) for v in values) + 1)]
    return sorted(set(values))


def _given(cfg: LabelledConfig, column: str) -> list[str] | None:
    if isinstance(cfg.groups, dict):
        return cfg.groups.get(column)
    return cfg.groups


def protected_attributes(cfg: LabelledConfig, train: list[tuple[str, ...]]) -> ProtectedAttributes:
    """The protected attributes of the group columns: each column's value names from the recipe
    (``data.groups``) or from its values in the training split (``train``: one tuple per image)."""
    columns = attribute_list(cfg.group_column)
    values = tuple(tuple(value_names([r[k] for r in train], _given(cfg, c))) for k, c in enumerate(columns))
    total = int(np.prod([len(v) for v in values]))
    if total > MAX_GROUPS:
        raise EdgeKDError(
            f"data.group_column: the columns {', '.join(columns)} make {total} groups "
            f"(intersections of their values); at most {MAX_GROUPS} are allowed"
        )
    if len(columns) == 1:
        return ProtectedAttributes((cfg.protected_attribute or columns[0],), values)
    return ProtectedAttributes(tuple(columns), values)


def index_values(
    values: list[str],
    names: list[str],
    *,
    what: str,
    among: str,
    source: str | Path,
    unit: str = "rows",
    joiner: str = "with",
    by_index: bool = True,
) -> np.ndarray:
    """The index in ``names`` of every value (``by_index``: an integer in range is an index too).

    Values outside ``names`` are one error line: ``source``, how many ``unit`` hold them, each
    with its count (most frequent first), and the allowed names, e.g. ``train.csv: 3 rows with
    labels not in data.classes: tshirtt (3); allowed: t-shirt, trouser``.
    """
    lookup = {name: i for i, name in enumerate(names)}
    out = np.empty(len(values), dtype=np.int64)
    unknown: Counter[str] = Counter()
    for i, value in enumerate(values):
        if value in lookup:
            out[i] = lookup[value]
        elif by_index and value.lstrip("-").isdigit() and 0 <= int(value) < len(names):
            out[i] = int(value)
        else:
            unknown[value] += 1
    if unknown:
        found = [
            f"{value!r} ({count})" if not value.strip() else f"{value} ({count})"
            for value, count in unknown.most_common()
        ]
        raise EdgeKDError(
            f"{source}: {sum(unknown.values())} {unit} {joiner} {what} not in {among}: "
            f"{listing(found, 10)}; allowed: {listing(names)}"
        )
    return out


def group_codes(
    cfg: LabelledConfig,
    attributes: ProtectedAttributes,
    values: list[tuple[str, ...]],
    *,
    source: str | Path,
    found_in: str,
    unit: str = "rows",
) -> np.ndarray:
    """The group index of every image from its group-column ``values``: each column's value
    checked against its names (declared, or those of the training split, ``found_in``)."""
    columns = attribute_list(cfg.group_column)
    codes = []
    for k, (column, names) in enumerate(zip(columns, attributes.values)):
        given = cfg.groups.get(column) if isinstance(cfg.groups, dict) else cfg.groups
        declared = "data.groups" if not isinstance(cfg.groups, dict) else f"data.groups.{column}"
        codes.append(
            index_values(
                [v[k] for v in values],
                list(names),
                source=source,
                unit=unit,
                what="groups" if len(columns) == 1 else f"{column} values",
                among=declared if given else f"the {column} values of {found_in}",
            )
        )
    return attributes.combine(np.stack(codes, axis=1))


def check_names(cfg: LabelledConfig, class_names: list[str], group_names: list[str], where: str) -> None:
    """The class, group and attribute names, checked before any image is decoded."""
    check_labels(class_names, "class name", where)
    check_labels(group_names, "group name", where)
    if cfg.protected_attribute is not None:
        check_label(cfg.protected_attribute, "protected attribute (data.protected_attribute)", "recipe")


def census_lines(
    cfg: LabelledConfig,
    source: str,
    *,
    class_names: list[str],
    group_names: list[str],
    splits: dict,
    classes_found_in: str,
    groups_found_in: str,
) -> list[str]:
    """The :func:`census_line` of the classes and of the groups, for each the recipe does not
    declare (``splits``: split -> its loaded data, with ``labels`` and ``groups``)."""
    lines = []
    if not cfg.classes:
        lines.append(
            census_line(
                source,
                kind="classes",
                key="data.classes",
                found_in=classes_found_in,
                names=class_names,
                splits={k: d.labels for k, d in splits.items()},
            )
        )
    if not cfg.groups_declared():
        lines.append(
            census_line(
                source,
                kind="groups",
                key="data.groups",
                found_in=groups_found_in,
                names=group_names,
                splits={k: d.groups for k, d in splits.items()},
            )
        )
    return lines


def census_line(
    source: str, *, kind: str, key: str, found_in: str, names: list[str], splits: dict[str, np.ndarray]
) -> str:
    """One line listing ``names`` with their image counts per split (``splits``: split -> the
    name index of each of its images), for a recipe that does not declare them (``key``): a typo'd class
    is then a visible name of a handful of images.

    ``data (csv): data.classes not given; 3 classes found in train.csv (images in
    train/val/test): cat 10/2/3, dog 12/3/3, tshirtt 3/0/0; set data.classes to make any other
    label an error``
    """
    counts = np.stack(
        [np.bincount(np.asarray(v, np.int64), minlength=len(names))[: len(names)] for v in splits.values()],
        axis=1,
    )
    order = list(range(len(names)))
    what = f"{len(names)} {kind}"
    if len(names) > CENSUS_NAMES:  # a typo is rare: show the rarest in training
        order = sorted(order, key=lambda k: (counts[k, 0], names[k]))[:CENSUS_NAMES]
        what = f"the {CENSUS_NAMES} rarest of {len(names)} {kind}"
    shown = ", ".join(f"{names[k]} {'/'.join(str(int(c)) for c in counts[k])}" for k in order)
    single = {"classes": "label", "groups": "group value"}.get(kind, kind)
    return (
        f"data ({source}): {key} not given; {what} found in {found_in} (images in "
        f"{'/'.join(splits)}): {shown}; set {key} to make any other {single} an error"
    )
