"""Read a bundle's ``card.json`` and check it against the card's JSON Schema before use.

The schema is published in the package (``edgekd/card/card.schema.json``, JSON Schema 2020-12),
so other tools can check cards too. :func:`edgekd.card.io.load_card` bounds the work a hostile
card can cause:
the file size is capped before it is parsed, nesting too deep for the parser is one line, the
schema bounds every list the renderers loop over, and the few rules JSON Schema cannot say (one
``per_class`` row per class, a recall for every group) are checked here. Every failure is one
:class:`~edgekd.errors.EdgeKDError` line naming the file, the key path and what is wrong.

Torch-free: ``edgekd card`` runs on the device.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = ["CARD_SCHEMA_FILE", "MAX_CARD_BYTES", "card_schema", "check_card"]

CARD_SCHEMA_FILE = Path(__file__).with_name("card.schema.json")
MAX_CARD_BYTES = 32 << 20  # a tiny card is 23 kB; ten thousand classes stay well below this


@lru_cache(maxsize=1)
def card_schema() -> dict:
    """The card's JSON Schema (``edgekd.card/v1``)."""
    return json.loads(CARD_SCHEMA_FILE.read_text())


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(card_schema())


def shorten(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_path(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "(top)"


def check_card(card: object, where: str | Path = "card.json") -> dict:
    """``card`` if it is a valid ``edgekd.card/v1`` card, else one line naming the first problem.

    Parameters
    ----------
    card : object
        The parsed JSON.
    where : str or Path
        The file it came from, for the message.
    """
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(card))
    if error is not None:
        raise EdgeKDError(
            f"{where}: {_key_path(error.absolute_path)}: {shorten(error.message)} "
            f"(not an edgekd.card/v1 card; see edgekd/card/card.schema.json)"
        )
    classes, groups = card["task"]["classes"], card["data"]["groups"]
    for name, entry in card["models"].items():
        rows = entry["metrics"]["per_class"]
        if len(rows) != len(classes):
            raise EdgeKDError(
                f"{where}: models.{name}.metrics.per_class has {len(rows)} rows for "
                f"{len(classes)} classes in task.classes; they must match"
            )
    for k, row in enumerate(card["models"]["student"]["metrics"]["per_class"]):
        missing = [g for g in groups if g not in row["recall_by_group"]]
        if missing:
            raise EdgeKDError(
                f"{where}: models.student.metrics.per_class[{k}].recall_by_group has no "
                f"{missing[0]!r}; it needs every group of data.groups"
            )
    return card
