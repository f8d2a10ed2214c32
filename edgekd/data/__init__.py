"""Data sources, picked by name from ``data.source``.

Each source turns its recipe section into :class:`DataSplits` (uint8 images, labels, protected
groups, class and group names). Sources import no torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgekd.data.celeba import load_celeba
from edgekd.data.csv_folder import load_csv
from edgekd.data.fashion_mnist import load_fashion_mnist_colored
from edgekd.data.splits import DataSplits, Split
from edgekd.data.trifeature import load_trifeature
from edgekd.data.wider_attribute import load_wider_attribute
from edgekd.registry import Registry

__all__ = ["DATA_SOURCES", "DataSplits", "Split", "load_data", "PIXEL_NEUTRAL"]

# Data settings that do not change the pixels a build trains on, left out of stage keys: moving
# the cache, decoding with more threads or making a bad file fatal must not force a retrain.
PIXEL_NEUTRAL = {"cache_dir", "workers", "on_bad_image"}

DATA_SOURCES: Registry[Callable[..., DataSplits]] = Registry("data source")
DATA_SOURCES.register("trifeature")(load_trifeature)
DATA_SOURCES.register("csv")(load_csv)
DATA_SOURCES.register("celeba")(load_celeba)
DATA_SOURCES.register("wider_attribute")(load_wider_attribute)
DATA_SOURCES.register("fashion_mnist_colored")(load_fashion_mnist_colored)


def load_data(cfg, *, seed: int) -> DataSplits:
    """The splits for a recipe's ``data`` section, with ``description["warnings"]`` listing what
    makes its fairness numbers undefined (see :func:`data_warnings`)."""
    data = DATA_SOURCES.get(cfg.source, key="data.source")(cfg, seed=seed)
    warnings = data_warnings(data)
    if warnings:
        data.description["warnings"] = warnings
    return data


def data_warnings(data: DataSplits) -> list[str]:
    """One line per property of the test split that leaves disparities undefined (``-``)."""
    present = sorted(set(np.unique(data.test.groups).tolist()))
    if len(present) >= 2:
        return []
    names = [data.group_names[g] if 0 <= g < len(data.group_names) else str(g) for g in present]
    return [f"data: the test split has images of only one group of {data.protected_attribute} "
            f"({', '.join(names) or 'none'} of {', '.join(data.group_names)}); every disparity, DPD "
            "and EOD on the card is undefined (-)"]
