"""Where a bundle keeps its card, and reading it back (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = ["CARD_JSON", "CARD_MD", "load_card"]

CARD_JSON = "card.json"
CARD_MD = "card.md"


def load_card(bundle: str | Path) -> dict:
    """The card of a bundle directory (``bundle/card.json``).

    Raises :class:`~edgekd.errors.EdgeKDError` with one line when there is no card or it is not
    a JSON object.
    """
    path = Path(bundle) / CARD_JSON
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeKDError(f"{bundle}: no {CARD_JSON}; not an edgekd bundle") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise EdgeKDError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(card, dict):
        raise EdgeKDError(f"{path}: not an edgekd card (a JSON object with schema, models, ...)")
    return card
