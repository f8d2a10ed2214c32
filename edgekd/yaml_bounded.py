"""YAML with its cost bounded before any object is built.

``yaml.safe_load`` builds no code, but a few hundred bytes can still cost the machine: aliases
that each repeat the previous level ten times ("billion laughs": 353 bytes that stand for 10^9
strings, which every deep copy, JSON dump or validation then walks), or nesting a hundred
thousand levels deep (a ``RecursionError`` in the composer). :func:`load_yaml` bounds, in this
order and each with one :class:`~edgekd.errors.EdgeKDError` line:

- the text's size (:data:`MAX_BYTES`), before parsing;
- the nesting depth (:data:`MAX_DEPTH`), while composing, so a deep document stops at that depth;
- the number of aliases (:data:`MAX_ALIASES`), while composing;
- the number of nodes the document stands for once every alias is expanded
  (:data:`MAX_NODES`), counted on the composed node graph (each node once, memoised), before the
  constructor builds a single Python object.

A recipe is a few kilobytes with a handful of nodes, so the bounds never touch a real one.
"""

from __future__ import annotations

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from edgekd.errors import EdgeKDError

__all__ = ["load_yaml", "MAX_BYTES", "MAX_DEPTH", "MAX_ALIASES", "MAX_NODES"]

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_NODES = 100_000


class _Bounded(Exception):
    """Raised inside the composer; turned into one line by :func:`load_yaml`."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting depth and aliases as it composes."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Bounded(f"more than {MAX_ALIASES} aliases (*name)")
            return Composer.compose_node(self, parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Bounded(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: Node) -> int:
    """How many nodes ``root`` stands for with every alias expanded (shared nodes counted once
    per use), stopping as soon as the count passes :data:`MAX_NODES`."""
    sizes: dict[int, int] = {}

    def size(node: Node, depth: int = 0) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_NODES + 1  # a node that contains itself expands without end
        total = 1
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                break
        sizes[id(node)] = total
        return total

    return size(root)


def load_yaml(text: str, source: str) -> object:
    """Parse ``text`` (a recipe, or a ``--set`` value) as plain YAML data within the bounds of
    this module; ``source`` names it in the error line. Parse errors are left to the caller
    (``yaml.YAMLError``), as ``yaml.safe_load`` raises them."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise EdgeKDError(f"{source}: {size} bytes, above the {MAX_BYTES} a recipe may have")
    loader = _BoundedLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except _Bounded as err:
            raise EdgeKDError(f"{source}: refused: {err}; a recipe is small plain data") from None
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise EdgeKDError(
                f"{source}: refused: its aliases expand to more than {MAX_NODES} values "
                f"(an alias bomb); a recipe is small plain data"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
