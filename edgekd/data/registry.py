"""The data-source registry: ``data.source: NAME`` -> its settings class and its loader.

A source is one module under ``edgekd/data`` that defines its recipe section (a
:class:`~edgekd.config.Section` whose ``source`` field is ``Literal[NAME]``) and registers its
loader with it, the way timm registers a model where it is defined::

    class MyConfig(Section):
        source: Literal["mine"] = "mine"
        image_size: int = 64

    @register_source(MyConfig)
    def load_mine(cfg: MyConfig, *, seed: int) -> DataSplits: ...

:mod:`edgekd.recipe` builds the ``data`` section's schema from this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgekd.config import Section
from edgekd.data.splits import DataSplits
from edgekd.registry import Registry, tag_of

__all__ = ["DataSource", "DATA_SOURCES", "register_source"]


@dataclass(frozen=True)
class DataSource:
    """A registered source: its recipe section and the function that loads its splits."""

    config: type[Section]
    load: Callable[..., DataSplits]


DATA_SOURCES: Registry[DataSource] = Registry("data source")


Loader = Callable[..., DataSplits]


def register_source(config: type[Section]) -> Callable[[Loader], Loader]:
    """Register the decorated loader under the name its ``config`` declares in ``source``."""

    def add(load: Loader) -> Loader:
        DATA_SOURCES.register(tag_of(config, "source"))(DataSource(config, load))
        return load

    return add
