"""The in-memory form every data source returns, independent of torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Split", "DataSplits"]


@dataclass(frozen=True)
class Split:
    """One split: uint8 images (N, H, W, 3), integer labels (N,) and protected groups (N,)."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.labels) != n or len(self.groups) != n:
            raise ValueError("images, labels and groups must have the same length")

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DataSplits:
    """Train / validation / test splits plus what the card and the device need to know.

    ``train_for_epoch(epoch)`` returns the training split of an epoch: generated sources may draw
    fresh images every epoch (deterministically from the seed and the epoch), file sources return
    the same split each time. Validation selects the best epoch; test is only for the card.
    """

    train: Split
    val: Split
    test: Split
    class_names: list[str]
    group_names: list[str]
    protected_attribute: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: dict = field(default_factory=dict)
    train_for_epoch: Callable[[int], Split] | None = None

    def __post_init__(self) -> None:
        if self.train_for_epoch is None:
            self.train_for_epoch = lambda epoch: self.train

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
