"""Where a bundle keeps its card, and reading it back checked (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.card.schema import MAX_CARD_BYTES, check_card, shorten
from edgekd.errors import EdgeKDError
from edgekd.paths import inside

__all__ = ["CARD_JSON", "CARD_MD", "load_card"]

CARD_JSON = "card.json"
CARD_MD = "card.md"


def load_card(bundle: str | Path) -> dict:
    """The card of a bundle directory (or of a ``card.json`` path), checked against the card's
    JSON Schema (:mod:`edgekd.card.schema`) with its size and nesting bounded; every problem is
    one :class:`~edgekd.errors.EdgeKDError` line."""
    path = Path(bundle)
    if path.suffix != ".json":
        if not (path / CARD_JSON).is_file():
            raise EdgeKDError(f"{path}: no {CARD_JSON}; not an edgekd bundle")
        path = inside(CARD_JSON, path, listed_in=path)  # a symlink out is not the bundle's card
    elif not path.is_file():
        raise EdgeKDError(f"{path}: no such card file")
    size = path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise EdgeKDError(f"{path}: {size} bytes, above the {MAX_CARD_BYTES} bytes a card may have")
    try:
        card = json.loads(path.read_bytes())
    except RecursionError:
        raise EdgeKDError(f"{path}: nested too deeply to be a card") from None
    except ValueError as err:
        raise EdgeKDError(f"{path}: not valid JSON ({shorten(err)})") from None
    try:
        return check_card(card, path)
    except RecursionError:
        raise EdgeKDError(f"{path}: nested too deeply to be a card") from None
