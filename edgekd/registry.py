"""Name -> implementation registries, the way timm picks models by name.

A recipe names a data source, a distillation method or an exporter; the registry turns the name
into the object and, for an unknown name, lists the registered ones::

    DATA_SOURCES = Registry("data source")

    @DATA_SOURCES.register("trifeature")
    def load_trifeature(cfg): ...

    DATA_SOURCES.get("trifeature")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, get_args

from edgekd.errors import EdgeKDError

__all__ = ["Registry", "tag_of"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from a name used in recipes to an implementation."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str, *, key: str | None = None) -> T:
        """Return the entry for ``name``; ``key`` is the recipe key named in the error."""
        try:
            return self._entries[name]
        except KeyError:
            where = f"{key}: " if key else ""
            raise EdgeKDError(
                f"{where}unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def tag_of(config: Any, field: str) -> str:
    """The name a settings class answers to: the one value of its ``Literal`` ``field``
    (``method: Literal["kd"]`` -> ``"kd"``)."""
    (name,) = get_args(config.model_fields[field].annotation)
    return name
