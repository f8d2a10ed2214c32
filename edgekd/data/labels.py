"""Names a data set gives its classes, groups and protected attributes, checked as it is read.

They end up in the card (JSON, Markdown, HTML), in plot labels and in ``preprocess.json`` on the
device; one that the card's schema would refuse after hours of training, or that breaks a line
of card.md, is one line here instead, before any image is decoded or any epoch trained: at most
:data:`MAX_LABEL` characters, not empty or blank, and only printable characters (no newline,
tab, control character or Unicode line separator). Markup characters (``<``, ``$``, ``|``, ...)
are allowed: every renderer escapes them (:mod:`edgekd.card.escape`).
"""

from __future__ import annotations

from collections.abc import Iterable

from edgekd.errors import EdgeKDError

__all__ = ["MAX_LABEL", "check_label", "check_labels", "check_data_labels"]

MAX_LABEL = 200  # the card schema allows 1000; a plot or a table needs far less


def check_label(name: object, what: str, source: str) -> str:
    """``name`` when it is a usable label, else one line naming ``what`` and ``source``."""
    if not isinstance(name, str):
        raise EdgeKDError(f"{source}: {what} {name!r} is not a string")
    shown = repr(name if len(name) <= 60 else name[:57] + "...")
    if not name.strip():
        raise EdgeKDError(f"{source}: {what} {shown} is empty; give it a name")
    if len(name) > MAX_LABEL:
        raise EdgeKDError(
            f"{source}: {what} {shown} has {len(name)} characters; at most {MAX_LABEL} are allowed"
        )
    bad = next((c for c in name if not c.isprintable()), None)
    if bad is not None:
        raise EdgeKDError(
            f"{source}: {what} {shown} contains the character {bad!r}; labels are one line of printable text"
        )
    return name


def check_labels(names: Iterable[object], what: str, source: str) -> list[str]:
    """:func:`check_label` for each of ``names``."""
    return [check_label(name, what, source) for name in names]


def check_data_labels(data, source: str) -> None:
    """Every class name, group name and protected attribute name of a loaded data set."""
    check_labels(data.class_names, "class name", source)
    check_labels(data.group_names, "group name", source)
    check_label(data.protected_attribute, "protected attribute", source)
    attributes = getattr(data, "attributes", None)
    if attributes is not None:
        for name, values in zip(attributes.names, attributes.values):
            check_label(name, "protected attribute", source)
            check_labels(values, f"value of {name}", source)
