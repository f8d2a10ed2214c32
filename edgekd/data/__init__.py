"""Data sources, picked by name from ``data.source`` (:mod:`edgekd.data.registry`).

Each source is one module that defines its recipe section and registers its loader with it; the
loader turns the section into :class:`DataSplits` (uint8 images, labels, protected groups, class
and group names). Sources import no torch.
"""

from __future__ import annotations

import numpy as np

# Importing a source's module registers it.
from edgekd.data import celeba, csv_folder, fashion_mnist, image_folder, trifeature, wider_attribute  # noqa: F401
from edgekd.data.labels import check_data_labels
from edgekd.data.registry import DATA_SOURCES, DataSource, register_source
from edgekd.data.splits import DataSplits, Split

__all__ = [
    "DATA_SOURCES",
    "DataSource",
    "DataSplits",
    "Split",
    "load_data",
    "register_source",
    "PIXEL_NEUTRAL",
    "data_warnings",
]

# Data settings that do not change the pixels a build trains on, left out of stage keys: moving
# the cache, decoding with more threads or making bad files fatal must not force a retrain.
PIXEL_NEUTRAL = {"cache_dir", "workers", "on_bad_image", "max_bad_fraction"}


def load_data(cfg, *, seed: int) -> DataSplits:
    """The splits for a recipe's ``data`` section. ``description["warnings"]`` holds the lines the
    build prints as ``warning: ...`` (and the card lists): the source's own (files left out,
    the classes found when the recipe declares none) and what makes the fairness numbers
    undefined (see :func:`data_warnings`)."""
    data = DATA_SOURCES.get(cfg.source, key="data.source").load(cfg, seed=seed)
    check_data_labels(data, f"data ({cfg.source})")  # before any training; the csv source earlier
    warnings = list(data.description.pop("warnings", None) or []) + data_warnings(data)
    if warnings:
        data.description["warnings"] = warnings
    return data


def data_warnings(data: DataSplits) -> list[str]:
    """One line per property of the test split that leaves disparities undefined (``-``)."""
    present = sorted(set(np.unique(data.test.groups).tolist()))
    if len(present) >= 2:
        return []
    names = [data.group_names[g] if 0 <= g < len(data.group_names) else str(g) for g in present]
    return [
        f"data: the test split has images of only one group of {data.protected_attribute} "
        f"({', '.join(names) or 'none'} of {', '.join(data.group_names)}); every disparity, DPD "
        "and EOD on the card is undefined (-)"
    ]
