"""Several protected attributes: their groups are the intersections of the attributes' values.

A source that reads ``protected: [Male, Young]`` (CelebA), several ``group_column`` s (CSV) or
several WIDER attributes gives each image one value per attribute; its group is the combination.
Group indices are a mixed-radix number of the value indices, the first attribute the most
significant, so the order is lexicographic over the attributes' values in the order the recipe
lists them::

    attrs = ProtectedAttributes(("Male", "Young"), (("0", "1"), ("0", "1")))
    attrs.group_names()   # ['Male=0,Young=0', 'Male=0,Young=1', 'Male=1,Young=0', 'Male=1,Young=1']
    attrs.combine(np.array([[1, 0]]))   # array([2])

Every combination is a group, present in the data or not: the indices then depend only on the
attributes and their values, never on which images a split or a subset happens to hold, so a
model's outputs, the adversary's head and the card's columns mean the same in every build. A
combination without test images is reported as a cell of 0 images (left out of the means).

One attribute keeps the names its source always gave (``not Male`` / ``Male``, ``female`` /
``male``): a recipe with a single attribute builds exactly what it built before.

Numpy only: the card and the device read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ProtectedAttributes", "MAX_GROUPS", "attribute_list", "check_attribute_list"]

# The card's schema bounds the groups a card may list; more intersections than this are an error.
MAX_GROUPS = 1000


def check_attribute_list(value: str | list[str], what: str = "protected attribute") -> str | list[str]:
    """A recipe's ``str`` or list of attribute names, checked: a list is non-empty, has no blank
    and no duplicate name (raises ``ValueError``: a recipe error line). A string is kept as it is,
    so a single-attribute recipe resolves (and hashes) exactly as before."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"the {what} name is empty")
        return value
    if not value:
        raise ValueError(f"an empty list; name at least one {what}")
    for name in value:
        if not name.strip():
            raise ValueError(f"an empty {what} name in {value}")
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        raise ValueError(f"{repeated[0]!r} is listed twice; each {what} once")
    return value


def attribute_list(value: str | Sequence[str]) -> list[str]:
    """The names of ``str | list`` as a list."""
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class ProtectedAttributes:
    """Protected attributes, the names of each one's values (in index order), and their groups.

    Parameters
    ----------
    names : tuple of str
        The attributes, in the order the recipe lists them (the first is the most significant
        digit of a group index).
    values : tuple of tuple of str
        Each attribute's value names in index order (``("0", "1")`` for CelebA's -1/1 values).
    single_names : tuple of str, optional
        With one attribute, the group names the source gives it (``("not Male", "Male")``);
        default: its value names.
    """

    names: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    single_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.names) != len(self.values) or not self.names:
            raise ValueError("one list of value names per attribute, and at least one attribute")

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    @property
    def num_groups(self) -> int:
        return int(np.prod([len(v) for v in self.values]))

    @property
    def label(self) -> str:
        """How the card names the protected attribute: ``Male`` or ``Male, Young``."""
        return ", ".join(self.names)

    def value_name(self, k: int, value: int) -> str:
        """``Male=1``: value ``value`` of attribute ``k`` as its groups are named alone."""
        return f"{self.names[k]}={self.values[k][value]}"

    def group_names(self) -> list[str]:
        """Every intersection's name in index order (``Male=0,Young=1``); one attribute: its
        source's own group names."""
        if not self.several:
            return list(self.single_names or self.values[0])
        digits = self.digits()
        return [",".join(self.value_name(k, int(v)) for k, v in enumerate(row)) for row in digits]

    def digits(self) -> np.ndarray:
        """``(num_groups, num_attributes)``: the value index of every attribute in every group."""
        sizes = [len(v) for v in self.values]
        return np.array(np.unravel_index(np.arange(self.num_groups), sizes)).T.reshape(-1, len(sizes))

    def combine(self, codes: np.ndarray) -> np.ndarray:
        """Group index of every row of ``codes`` ``(n, num_attributes)`` (value indices)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, len(self.names))
        if len(codes) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.ravel_multi_index(tuple(codes.T), [len(v) for v in self.values]).astype(np.int64)

    def marginal(self, k: int) -> tuple[list[str], np.ndarray]:
        """Attribute ``k`` alone: its group names (``Male=0``, ``Male=1``) and, per intersection
        group, the index of its value of ``k`` (to map a split's groups onto them)."""
        names = [self.value_name(k, v) for v in range(len(self.values[k]))]
        return names, self.digits()[:, k].astype(np.int64)
