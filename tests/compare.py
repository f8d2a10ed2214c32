"""Comparing nested results (dicts, lists, numbers) the way the tests need: exact structure,
floats to a relative and absolute 1e-12."""

from __future__ import annotations

import math


def assert_close_tree(a, b, path: str = "") -> None:
    """Assert ``a`` and ``b`` have the same keys, lengths and values; floats equal to 1e-12.
    ``path`` names the first place they differ."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            assert_close_tree(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)
