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
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "build", "bench", "load_card", "verify", "Recipe", "load_recipe", "EdgeKDError"]

# name -> (module, attribute); ``bench`` is the callable package edgekd.bench itself
_API = {
    "build": ("edgekd.pipeline", "build"),
    "bench": ("edgekd.bench", None),
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
    loaded = importlib.import_module(module)
    return loaded if attribute is None else getattr(loaded, attribute)
