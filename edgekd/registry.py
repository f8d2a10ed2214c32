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
_MISSING = object()


class Registry(Generic[T]):
    """A table from a name used in recipes (or on the card) to an implementation, in the order
    entries were added. Every table of edgekd is one: data sources, distillation methods,
    metrics, checkpoint metrics, export formats, artifact files, bench backends."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Add ``obj`` as ``name``; a name is registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """:meth:`add` as a decorator."""
        return lambda obj: self.add(name, obj)

    def remove(self, name: str) -> None:
        """Forget an entry (tests that register one of their own)."""
        del self._entries[name]

    def get(self, name: str, default: Any = _MISSING, *, key: str | None = None) -> T:
        """Return the entry for ``name``; an unknown name is one line listing the registered
        ones (``key``: the recipe key or flag it came from), or ``default`` when one is given."""
        try:
            return self._entries[name]
        except KeyError:
            if default is not _MISSING:
                return default
            where = f"{key}: " if key else ""
            raise EdgeKDError(
                f"{where}unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._entries))}"
            ) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, obj: T) -> None:
        """Replace (or add) an entry in place: tests stand one in with ``monkeypatch.setitem``."""
        self._entries[name] = obj

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def names(self) -> list[str]:
        """Every name, in the order added."""
        return list(self._entries)

    def values(self) -> list[T]:
        return list(self._entries.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def tag_of(config: Any, field: str) -> str:
    """The name a settings class answers to: the one value of its ``Literal`` ``field``
    (``method: Literal["kd"]`` -> ``"kd"``)."""
    (name,) = get_args(config.model_fields[field].annotation)
    return name
