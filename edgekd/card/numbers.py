"""Numbers as the card prints them: fixed decimals, and never a negative zero.

``f"{-0.0001:.3f}"`` is ``-0.000``: a value that rounds to zero keeps its sign, and a reader sees
a direction where there is none. Every number card.md (and so card.html) prints goes through
:func:`fixed` or :func:`signed`, which print such a value as an unsigned zero.

Torch-free.
"""

from __future__ import annotations

__all__ = ["fixed", "signed", "general"]


def _zero_unsigned(text: str) -> str:
    """A formatted number with its sign dropped when it reads as zero."""
    return text[1:] if text[:1] in "+-" and float(text) == 0 else text


def fixed(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, ``-`` when undefined; ``0.000``, never ``-0.000``.

    >>> fixed(-0.0004), fixed(0.1234), fixed(None)
    ('0.000', '0.123', '-')
    """
    if value is None:
        return "-"
    return _zero_unsigned(f"{value:.{digits}f}")


def signed(value: float | None, digits: int = 3) -> str:
    """``value`` with an explicit sign (a change: ``+0.012``, ``-0.034``), ``-`` when undefined;
    a change that rounds to zero is ``0.000``, with no sign.

    >>> signed(0.0123), signed(-0.0004), signed(0.0)
    ('+0.012', '0.000', '0.000')
    """
    if value is None:
        return "-"
    return _zero_unsigned(f"{value:+.{digits}f}")


def general(value: float, significant: int = 4) -> str:
    """``value`` to ``significant`` digits (``{:.4g}``), a negative zero printed as ``0``."""
    return _zero_unsigned(f"{value:.{significant}g}")
