"""Data sources, picked by name from ``data.source``.

Each source turns its recipe section into :class:`DataSplits` (uint8 images, labels, protected
groups, class and group names). Sources import no torch.
"""

from __future__ import annotations

from collections.abc import Callable

from edgekd.data.celeba import load_celeba
from edgekd.data.csv_folder import load_csv
from edgekd.data.fashion_mnist import load_fashion_mnist_colored
from edgekd.data.splits import DataSplits, Split
from edgekd.data.trifeature import load_trifeature
from edgekd.data.wider_attribute import load_wider_attribute
from edgekd.registry import Registry

__all__ = ["DATA_SOURCES", "DataSplits", "Split", "load_data"]

DATA_SOURCES: Registry[Callable[..., DataSplits]] = Registry("data source")
DATA_SOURCES.register("trifeature")(load_trifeature)
DATA_SOURCES.register("csv")(load_csv)
DATA_SOURCES.register("celeba")(load_celeba)
DATA_SOURCES.register("wider_attribute")(load_wider_attribute)
DATA_SOURCES.register("fashion_mnist_colored")(load_fashion_mnist_colored)


def load_data(cfg, *, seed: int) -> DataSplits:
    """The splits for a recipe's ``data`` section."""
    return DATA_SOURCES.get(cfg.source, key="data.source")(cfg, seed=seed)
