"""Every string a card carries, made safe for the format it is written into.

A card's strings come from data (class and group names from a CSV), from the device (a bench
result's device id) and from card.json itself, which anyone can edit. Written raw into card.md
they could start a line (``\\n# heading``), close a table cell (``|``), or be markup:
``![x](http://...)`` (a remote image fetched by whoever opens the card), ``<script>``, a link.
:func:`markdown_card` returns a copy of the card with every string (keys too) escaped once for
Markdown, so :mod:`edgekd.card.markdown` can place them anywhere:

- line breaks of every kind (``\\n``, ``\\r``, U+2028, ...) and other non-printable characters
  become spaces: a string stays on its line;
- the characters that make markup (``\\ ` * [ ] < > & | # $ ~``) are backslash-escaped (CommonMark
  escapes: shown as the character itself), as is a leading ``-``, ``+`` or ``=`` and the ``:``
  of ``://`` (no autolink);
- identifiers (``student``, ``equalized_odds``, ``plots/a.png``) have none of these and come
  out unchanged, so the renderer's comparisons still hold.

The HTML page is made from that Markdown (:mod:`edgekd.card.html`), which turns each escape back
into its character, HTML-escaped. The front matter is YAML (quoted by the dumper) made from
:func:`plain_card`, which only puts every string on one line. Plot labels go through
:func:`plot_label` (no mathtext: a class named ``price $_$ band`` is text).

Torch-free.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["markdown_text", "markdown_card", "plain_text", "plain_card", "plot_label"]

_MARKUP = re.compile(r"([\\`*\[\]<>&|#$~])")
_LEADING = re.compile(r"^([-+=])")
_SCHEME = re.compile(r":(?=//)")
_WWW = re.compile(r"\b(www)\.", re.IGNORECASE)


def plain_text(text: str) -> str:
    """``text`` on one line: every non-printable character (line breaks, tabs, controls,
    Unicode separators) replaced by a space."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown text on one line (see the module docstring)."""
    text = _MARKUP.sub(r"\\\1", plain_text(text))
    text = _LEADING.sub(r"\\\1", text)
    text = _SCHEME.sub(r"\\:", text)
    return _WWW.sub(r"\1\\.", text)


def _map_strings(value: Any, fn) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {(fn(k) if isinstance(k, str) else k): _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_strings(v, fn) for v in value]
    return value


def markdown_card(card: dict) -> dict:
    """A copy of ``card`` with every string, keys included, through :func:`markdown_text`."""
    return _map_strings(card, markdown_text)


def plain_card(card: dict) -> dict:
    """A copy of ``card`` with every string, keys included, through :func:`plain_text`."""
    return _map_strings(card, plain_text)


def plot_label(text: object, limit: int = 60) -> str:
    """A label for matplotlib: one line, at most ``limit`` characters, and every ``$`` escaped
    so that mathtext never parses it (``price $_$ band`` is drawn as written)."""
    text = plain_text(str(text))
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")
