"""Containment: a path read from a file must stay inside the folder that file describes.

A CSV row, an annotation file, a bundle's manifest or its card names files by relative path.
Whoever wrote that file must not be able to make edgekd read ``/etc/passwd``, a sibling folder
through ``../``, or a symlink that points out of the folder. :func:`inside` resolves the path
(symlinks included, as the operating system would follow them when opening it) and raises one
:class:`~edgekd.errors.EdgeKDError` line naming the path, where it was listed and the root.

Torch-free: ``verify`` and ``card`` use it on the device.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = ["inside", "is_inside"]


def is_inside(path: str | Path, root: str | Path) -> bool:
    """True when ``path`` (relative paths are taken relative to ``root``), with every symlink
    resolved, lies inside ``root`` (itself resolved)."""
    root = Path(os.path.realpath(root))
    full = Path(os.path.realpath(root / path))
    return full == root or full.is_relative_to(root)


def inside(path: str | Path, root: str | Path, *, listed_in: str | Path) -> Path:
    """``root / path`` resolved, or one line naming ``path``, ``listed_in`` and ``root``.

    Parameters
    ----------
    path : str or Path
        The path as written in the file (relative to ``root``, or absolute).
    root : str or Path
        The folder every path of that file must stay inside.
    listed_in : str or Path
        Where the path was read (a file, or a file and a line), for the message.

    Returns
    -------
    Path
        The resolved path, inside ``root``.

    Raises
    ------
    EdgeKDError
        When the path leaves ``root`` by being absolute, through ``..`` or through a symlink.
    """
    real_root = Path(os.path.realpath(root))
    full = Path(os.path.realpath(real_root / path))
    if full != real_root and not full.is_relative_to(real_root):
        how = "a symlink leads" if not _lexically_outside(path, real_root) else "it points"
        raise EdgeKDError(f"{listed_in}: path {str(path)!r} is outside {real_root} ({how} to "
                          f"{full}); only files inside that folder are read")
    return full


def _lexically_outside(path: str | Path, root: Path) -> bool:
    normal = Path(os.path.normpath(root / path))
    return normal != root and not normal.is_relative_to(root)

