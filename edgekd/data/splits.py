"""The form every data source returns, independent of torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgekd.data import rows
from edgekd.data.groups import ProtectedAttributes

__all__ = ["Split", "DataSplits", "cell_weights"]


def cell_weights(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Kamiran & Calders' reweighing weight ``P(c) P(g) / P(c, g)`` of every image (mean 1): with
    it every (class, group) cell weighs ``P(c) P(g)``, as if groups were spread evenly over the
    classes (Kamiran & Calders, Knowledge and Information Systems 33, 2012)."""
    labels, groups = np.asarray(labels, dtype=np.int64), np.asarray(groups, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return np.zeros(0)
    num_groups = int(groups.max()) + 1
    cells = labels * num_groups + groups
    cell_count = np.bincount(cells)[cells]
    label_count = np.bincount(labels)[labels]
    group_count = np.bincount(groups)[groups]
    return label_count * group_count / (n * cell_count)


@dataclass(frozen=True)
class Split:
    """One split: uint8 images (N, H, W, 3), integer labels (N,) and protected groups (N,).

    ``images`` may be memory-mapped (a file source's cache, :mod:`edgekd.data.cache`): read
    batches of it with :func:`edgekd.data.rows.take` / :func:`~edgekd.data.rows.prefetch`, which
    keep only those batches resident, rather than indexing or copying it whole.
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.labels) != n or len(self.groups) != n:
            raise ValueError("images, labels and groups must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    def cell_balanced(self, n: int, *, seed: int = 0) -> Split:
        """Up to ``n`` images spread as evenly as the data allow over the (class, group) cells:
        one from each cell in turn (in a seeded random order), a cell that runs out dropping out.

        Used where a biased split must stand for a balanced one, such as INT8 calibration: drawn
        as they come, 9 in 10 of a class's calibration images would be of its majority group.
        """
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self))
        cells = (self.labels * (int(self.groups.max(initial=0)) + 1) + self.groups)[order]
        turn = np.zeros(len(order), dtype=np.int64)  # the image's place in its cell's queue
        for cell in np.unique(cells):
            where = np.flatnonzero(cells == cell)
            turn[where] = np.arange(len(where))
        take = np.sort(order[np.argsort(turn, kind="stable")[:n]])
        return Split(rows.take(self.images, take), self.labels[take], self.groups[take])


@dataclass
class DataSplits:
    """Train / validation / test splits plus what the card and the device need to know.

    ``train_for_epoch(epoch)`` returns the training split of an epoch: generated sources may draw
    fresh images every epoch (deterministically from the seed and the epoch), file sources return
    the same split each time. Validation selects the best epoch; test is only for the card.
    ``attributes`` describes the protected attributes whose intersections the groups are
    (:mod:`edgekd.data.groups`); with one attribute it is made from ``group_names``.
    """

    train: Split
    val: Split
    test: Split
    class_names: list[str]
    group_names: list[str]
    protected_attribute: str
    mean: tuple[float, ...]  # one per channel (RGB)
    std: tuple[float, ...]
    description: dict = field(default_factory=dict)
    train_for_epoch: Callable[[int], Split] | None = None
    attributes: ProtectedAttributes | None = None  # several attributes: groups are intersections

    def __post_init__(self) -> None:
        if self.train_for_epoch is None:
            self.train_for_epoch = lambda epoch: self.train
        if self.attributes is None:  # one attribute: its groups are its values
            self.attributes = ProtectedAttributes((self.protected_attribute,), (tuple(self.group_names),))

    @property
    def image_size(self) -> int:
        return int(self.test.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocess(self) -> dict:
        """The contents of ``preprocess.json``: what a device needs to feed the model."""
        return {
            "input_size": [3, self.image_size, self.image_size],
            "layout": "NCHW",
            "pixel_scale": 1 / 255,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
            "protected_attribute": self.protected_attribute,
            "protected_groups": list(self.group_names),
        }
