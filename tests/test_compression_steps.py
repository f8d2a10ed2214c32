"""The card's compression steps: one entry per step (build and device alike), filed in chain order."""

import numpy as np
import pytest

from edgekd.card.compression import put_step, step_entry
from edgekd.fairness.compression import compression_effect

CLASSES, GROUPS = ["a", "b", "c"], ["warm", "cool"]
# the hand-worked example of tests/test_compression_effect.py
Y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2])
G = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0])
BEFORE = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 2, 2])
AFTER = np.array([0, 1, 2, 1, 0, 0, 0, 1, 1, 1, 2, 0])
SETTINGS = dict(alpha=0.05, min_effect=0.02, min_support=2)


def entry(after_name="onnx_int8", measured_on="build", after=AFTER):
    return step_entry("student", after_name, Y, BEFORE, after, G, class_names=CLASSES,
                      group_names=GROUPS, measured_on=measured_on, **SETTINGS)


def test_step_entry_is_the_effect_named_without_its_settings():
    step = entry()
    assert (step["step"], step["before"], step["after"], step["measured_on"]) \
        == ("student -> onnx_int8", "student", "onnx_int8", "build")
    effect = compression_effect(Y, BEFORE, AFTER, G, class_names=CLASSES, group_names=GROUPS, **SETTINGS)
    assert not {"alpha", "min_effect", "min_support"} & set(step)
    assert {k: v for k, v in step.items() if k not in ("step", "before", "after", "measured_on")} \
        == {k: v for k, v in effect.items() if k not in ("alpha", "min_effect", "min_support")}
    # min_support 2 leaves out the one-image cell (c, warm): the worst is (a, warm) at 2 of 4
    assert step["worst_cell"] == {"class": "a", "group": "warm", "agreement": 0.5, "images": 4}
    assert step["changed_images"] == 4


def test_put_step_keeps_chain_order_and_replaces_the_same_step():
    card = {}
    put_step(card, entry("onnx"), **SETTINGS)
    put_step(card, entry("onnx_int8"), **SETTINGS)
    put_step(card, entry("fp16.engine", measured_on="orin"), **SETTINGS)
    section = card["compression_by_group"]
    assert (section["alpha"], section["min_effect"], section["min_support"]) == (0.05, 0.02, 2)
    assert [s["step"] for s in section["steps"]] == ["student -> onnx", "student -> onnx_int8",
                                                     "student -> fp16.engine"]
    # measured again on the same device: replaced in place; on another device: a new step
    put_step(card, entry("fp16.engine", measured_on="orin", after=BEFORE), **SETTINGS)
    put_step(card, entry("fp16.engine", measured_on="nano"), **SETTINGS)
    steps = section["steps"]
    assert [(s["after"], s["measured_on"]) for s in steps] == [
        ("onnx", "build"), ("onnx_int8", "build"), ("fp16.engine", "orin"), ("fp16.engine", "nano")]
    assert steps[2]["overall"]["agreement"] == 1.0
    assert steps[3]["overall"]["agreement"] == pytest.approx(8 / 12)


def test_mcnemar_and_benjamini_hochberg_without_scipy_equal_scipy(monkeypatch):
    """The device has no scipy: the exact sums in integers and numpy give scipy's numbers."""
    from edgekd.fairness import significance

    pairs = [(0, 0), (0, 1), (2, 0), (3, 3), (0, 6), (12, 0), (7, 19), (40, 61), (250, 310), (1, 900)]
    pvalues = np.array([0.5, 0.01, 0.2, 0.03, 1.0, 0.04, 0.001, 0.03, 0.9, 0.049])
    with_scipy = [significance.mcnemar_exact(b, c) for b, c in pairs]
    adjusted, rejected = significance.benjamini_hochberg(pvalues, alpha=0.05)
    monkeypatch.setattr(significance, "_stats", lambda: None)
    assert [significance.mcnemar_exact(b, c) for b, c in pairs] == pytest.approx(with_scipy, rel=1e-9)
    # by hand: b = 0, c = 6 -> 2 / 2^6; b = 2, c = 0 -> 2 * 1/4 = 0.5
    assert significance.mcnemar_exact(0, 6) == 2 / 64 and significance.mcnemar_exact(2, 0) == 0.5
    lean_adjusted, lean_rejected = significance.benjamini_hochberg(pvalues, alpha=0.05)
    assert lean_adjusted == pytest.approx(adjusted, rel=1e-12) and (lean_rejected == rejected).all()
    # by hand: the smallest p 0.001 * 10 / 1 = 0.01; the tied 0.03 -> min over ranks >= 4 of p*10/i
    assert lean_adjusted[6] == pytest.approx(0.01)
    assert lean_adjusted[3] == pytest.approx(min(0.03 * 10 / 4, 0.04 * 10 / 5, 0.049 * 10 / 6))
