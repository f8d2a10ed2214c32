"""Where a bundle keeps its card, and reading it back checked (torch-free)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgekd.card.schema import MAX_CARD_BYTES, check_card, shorten
from edgekd.errors import EdgeKDError
from edgekd.files import write_atomic
from edgekd.paths import inside

__all__ = ["CARD_JSON", "CARD_MD", "load_card", "card_text", "write_card_json", "non_finite_path"]

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


def non_finite_path(value: Any, path: str = "") -> str | None:
    """The key path (``models.student.metrics.top1``) of the first NaN or infinity in ``value``
    (dicts, lists, numbers, numpy scalars), or None when every number is finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_path(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = non_finite_path(item, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, float) or hasattr(value, "dtype"):
        try:
            if not math.isfinite(float(value)):
                return path or "(top)"
        except (TypeError, ValueError):
            return None
    return None


def card_text(card: dict, where: str | Path = CARD_JSON) -> str:
    """``card`` as the text of ``card.json``: strict JSON, so a NaN or an infinity (which
    ``json.dumps`` would write as the non-JSON ``NaN``) is one line naming its key instead."""
    from edgekd.files import _json_default

    try:
        return json.dumps(card, indent=2, allow_nan=False, default=_json_default) + "\n"
    except ValueError:
        key = non_finite_path(json.loads(json.dumps(card, default=_json_default)))
        raise EdgeKDError(
            f"{where}: {key or 'a number'} is not a finite number (NaN or infinity); a "
            f"card holds finite numbers only, so a model or metric that diverged is not "
            f"shipped"
        ) from None


def write_card_json(path: Path, card: dict) -> None:
    """Write ``card.json`` atomically through :func:`card_text`."""
    write_atomic(path, card_text(card, path))
