"""The card's "compression by group" steps: one entry per step of the chain, built and on the device.

A step is a pair of predictions on the same test images, before and after (teacher -> student,
baseline -> student, student -> every exported artifact at build time, student -> every engine
or artifact the device measures). :func:`step_entry` turns one into the card's STEP entry, the
same way at build time and on the device (numpy only: the device reads the student's predictions
from the bundle's ``predictions.npz``), and :func:`put_step` files it under
``card["compression_by_group"]["steps"]``, replacing the step of the same before, after and
place of measurement.
"""

from __future__ import annotations

import numpy as np

from edgekd.fairness.compression import compression_effect

__all__ = ["step_entry", "put_step", "step_settings", "SECTION"]

SECTION = "compression_by_group"
# compression_effect's settings: kept once for the whole section, not in every step
_SETTINGS = ("alpha", "min_effect", "min_support")


def step_entry(
    before_name: str,
    after_name: str,
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    alpha: float,
    min_effect: float,
    min_support: int,
    measured_on: str,
) -> dict:
    """One step of ``card["compression_by_group"]["steps"]``.

    Parameters
    ----------
    before_name, after_name : str
        The models' names as in ``card["models"]`` (``"student"``, ``"onnx_int8"``, an engine's
        name on the device).
    y_true, before, after, groups : int arrays, shape (n,)
        True class, the two predictions on the same test images, and the protected group.
    class_names, group_names : list of str
    alpha, min_effect, min_support
        The card's false discovery rate, smallest recall change that counts, and fewest images
        a worst cell may rest on (:func:`edgekd.fairness.compression.compression_effect`).
    measured_on : str
        ``"build"``, or the name of the device that measured ``after``.

    Returns
    -------
    dict
        ``{"step": "student -> onnx_int8", "before", "after", "measured_on", ...}`` followed by
        :func:`~edgekd.fairness.compression.compression_effect`'s result without its settings.

    >>> entry = step_entry("student", "onnx_int8", [0, 1], [0, 1], [0, 0], [0, 1],
    ...                    class_names=["a", "b"], group_names=["x", "y"], alpha=0.05,
    ...                    min_effect=0.02, min_support=1, measured_on="build")
    >>> entry["step"], entry["overall"]["agreement"], entry["worst_cell"]["class"]
    ('student -> onnx_int8', 0.5, 'b')
    """
    effect = compression_effect(
        y_true,
        before,
        after,
        groups,
        class_names=list(class_names),
        group_names=list(group_names),
        alpha=alpha,
        min_effect=min_effect,
        min_support=min_support,
    )
    return {
        "step": f"{before_name} -> {after_name}",
        "before": before_name,
        "after": after_name,
        "measured_on": measured_on,
        **{key: value for key, value in effect.items() if key not in _SETTINGS},
    }


def put_step(card: dict, step: dict, *, alpha: float, min_effect: float, min_support: int) -> None:
    """Add ``step`` to ``card["compression_by_group"]`` (made with the settings if missing),
    replacing a step with the same ``before``, ``after`` and ``measured_on``; a new step goes last
    (the device's steps follow the build's chain)."""
    section = card.setdefault(
        SECTION, {"alpha": alpha, "min_effect": min_effect, "min_support": int(min_support), "steps": []}
    )
    steps = section.setdefault("steps", [])
    same = (step["before"], step["after"], step["measured_on"])
    for i, old in enumerate(steps):
        if (old.get("before"), old.get("after"), old.get("measured_on")) == same:
            steps[i] = step
            return
    steps.append(step)


def step_settings(card: dict | None) -> dict:
    """``alpha``, ``min_effect`` and ``min_support`` for a card's compression steps: its
    ``compression_by_group`` section's, else its significance tests' and ``data.min_support``,
    else the defaults (0.05, :data:`~edgekd.fairness.significance.DEFAULT_MIN_EFFECT`, 1): what
    the device measures its steps with, so they compare with the build's."""
    from edgekd.fairness.significance import DEFAULT_MIN_EFFECT

    card = card or {}
    section = card.get(SECTION) or {}
    test = (card.get("significance") or {}).get("teacher_to_student") or {}

    def number(key: str, default: float) -> float:
        for source in (section, test):
            value = source.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
        return default

    def support() -> int:
        for value in (section.get("min_support"), (card.get("data") or {}).get("min_support")):
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return value
        return 1

    return {
        "alpha": number("alpha", 0.05),
        "min_effect": number("min_effect", DEFAULT_MIN_EFFECT),
        "min_support": support(),
    }
