"""Data sources, picked by name from ``data.source`` (:mod:`edgekd.data.registry`).

Each source is one module that defines its recipe section and registers its loader with it; the
loader turns the section into :class:`DataSplits` (uint8 images, labels, protected groups, class
and group names). Sources import no torch.
"""

from __future__ import annotations

# Importing a source's module registers it; the first is the default of ``data.source``.
from edgekd.data import (  # noqa: F401
    celeba,
    csv_folder,
    fashion_mnist,
    trifeature,  # noqa: F401  (isort: keep trifeature first)
    wider_attribute,
)
from edgekd.data.registry import DATA_SOURCES, DataSource, register_source
from edgekd.data.splits import DataSplits, Split

__all__ = ["DATA_SOURCES", "DataSource", "DataSplits", "Split", "load_data", "register_source"]


def load_data(cfg, *, seed: int) -> DataSplits:
    """The splits for a recipe's ``data`` section."""
    return DATA_SOURCES.get(cfg.source, key="data.source").load(cfg, seed=seed)
