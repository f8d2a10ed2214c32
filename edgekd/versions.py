"""Versions of edgekd and the libraries a build or a bench ran with (read from metadata, no imports)."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["library_versions"]

_LIBRARIES = (
    "edgekd",
    "torch",
    "torchvision",
    "timm",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "fairlearn",
    "numpy",
    "scikit-learn",
    "tensorrt",
)


def library_versions() -> dict[str, str]:
    """Python and every installed library of interest, by distribution name."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
