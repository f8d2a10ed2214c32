"""Data sources, picked by name from ``data.source``.

Each source turns its recipe section into :class:`DataSplits` (uint8 images, labels, protected
groups, class and group names). Sources import no torch.
"""

from __future__ import annotations

from collections.abc import Callable

from edgekd.data.splits import DataSplits, Split
from edgekd.data.trifeature import load_trifeature
from edgekd.registry import Registry

__all__ = ["DATA_SOURCES", "DataSplits", "Split", "load_data"]

DATA_SOURCES: Registry[Callable[..., DataSplits]] = Registry("data source")
DATA_SOURCES.register("trifeature")(load_trifeature)


def load_data(cfg, *, seed: int) -> DataSplits:
    """The splits for a recipe's ``data`` section."""
    return DATA_SOURCES.get(cfg.source, key="data.source")(cfg, seed=seed)
