"""edgekd: distil a vision model for the edge and ship it with a fairness card.

The Python API is the commands' library functions::

    from edgekd import build, bench, load_card, verify

    result = build("recipes/quickstart.yaml", out="runs")   # BuildResult: bundle_dir, card, rows
    card = load_card(result.bundle_dir)                     # card.json as a dict
    assert verify(result.bundle_dir) == []                  # every file matches the manifest
    timing = bench(result.bundle_dir, batch_sizes="1,8")    # edgekd.bench/v1 result

``Recipe`` and ``load_recipe`` give the validated recipe type. Importing the package imports
nothing heavy: each name loads its module on first use, and device-side names (``bench``,
``load_card``, ``verify``) never load torch.

``edgekd.bench`` is the function :func:`bench`; the package of the same name (its modules:
``edgekd.bench.runner``, ``edgekd.bench.engine``, ...) is imported by module path::

    from edgekd.bench.runner import run_bench         # or: from edgekd.bench import runner
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "build", "bench", "load_card", "verify", "Recipe", "load_recipe", "EdgeKDError"]

# name -> (module, attribute), loaded on first use
_API = {
    "build": ("edgekd.pipeline", "build"),
    "load_card": ("edgekd.card.io", "load_card"),
    "verify": ("edgekd.bundle", "verify"),
    "Recipe": ("edgekd.recipe", "Recipe"),
    "load_recipe": ("edgekd.recipe", "load_recipe"),
    "EdgeKDError": ("edgekd.errors", "EdgeKDError"),
}

if TYPE_CHECKING:
    from edgekd.bundle import verify
    from edgekd.card.io import load_card
    from edgekd.errors import EdgeKDError
    from edgekd.pipeline import build
    from edgekd.recipe import Recipe, load_recipe


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
    module, attribute = _API[name]
    return getattr(importlib.import_module(module), attribute)


# The first import of a package sets its parent's attribute to it (``edgekd.bench`` = the
# package). So the package is imported here, first (its ``__init__`` imports nothing), and the
# function below then takes the name for good: ``from edgekd import bench`` is this function
# whatever was imported before. Importing by module path (``from edgekd.bench.runner import
# run_bench``, ``from edgekd.bench import runner``) works as ever; what walks attributes from
# ``edgekd`` down (``import edgekd.bench.runner as r``, ``mock.patch("edgekd.bench.runner.x")``)
# reaches the function and fails, so nothing in edgekd or its tests does.
importlib.import_module("edgekd.bench")


def bench(target, **options) -> dict:
    """Time (and with ``evaluate=True`` score) a bundle or model file where it runs; the
    ``edgekd.bench/v1`` result.

    The arguments are :func:`edgekd.bench.runner.run_bench`'s (``batch_sizes="1,8"``,
    ``iterations=200``, ``backend="auto"``, ...); never loads torch::

        timing = bench("runs/quickstart/bundle", batch_sizes="1,8")
    """
    from edgekd.bench.runner import run_bench

    return run_bench(target, **options)
