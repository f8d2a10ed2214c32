"""Containment: a path read from a file must stay inside the folder that file describes.

A CSV row, an annotation file, a bundle's manifest or its card names files by relative path.
Whoever wrote that file must not be able to make edgekd read ``/etc/passwd``, a sibling folder
through ``../``, or a symlink that points out of the folder. :func:`inside` resolves the path
(symlinks included, as the operating system would follow them when opening it) and raises one
:class:`~edgekd.errors.EdgeKDError` line naming the path, where it was listed and the root.

The other way round, names read from files (a manifest's ``name`` and ``version``, a bench
result's ``artifact.file``) are checked here once, before any path is made from them
(:func:`release_name`, :func:`canonical_relpath`), and a path the user names for output is
checked not to be a special file that a write would replace (:func:`output_file`,
:func:`output_dir`).

Torch-free: ``verify`` and ``card`` use it on the device.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = [
    "inside",
    "is_inside",
    "release_name",
    "canonical_relpath",
    "output_file",
    "output_dir",
    "special_file",
]


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
        raise EdgeKDError(
            f"{listed_in}: path {str(path)!r} is outside {real_root} ({how} to "
            f"{full}); only files inside that folder are read"
        )
    return full


def _lexically_outside(path: str | Path, root: Path) -> bool:
    normal = Path(os.path.normpath(root / path))
    return normal != root and not normal.is_relative_to(root)


# ------------------------------------------------------------------ names read from files
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # the recipe's name rule
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")  # the recipe's version rule
_REL_PART = re.compile(r"^[^\x00-\x1f\x7f\\]+$")  # no control characters, no backslash


def release_name(name: object, version: object, *, listed_in: str | Path) -> str:
    """``<name>-<version>``, the release's file and folder name, from a manifest's (or card's)
    ``name`` and ``version``, or one line when either could make a path leave its folder.

    Both must follow the recipe's rules (a letter or digit first, then letters, digits and
    ``._-`` (``+`` in a version too), at most 100 characters): no ``/``, no ``..``, never
    absolute. Every path made from them (the tarball beside a bundle, its members' top folder)
    goes through here.
    """
    for key, value, rule in (("name", name, _NAME), ("version", version, _VERSION)):
        if not isinstance(value, str) or not rule.match(value):
            raise EdgeKDError(
                f"{listed_in}: {key} {value!r} is not a release {key} (a letter or "
                f"digit, then letters, digits and {'._+-' if key == 'version' else '._-'}, "
                f"at most 100); refusing to make a path from it"
            )
    return f"{name}-{version}"


def canonical_relpath(rel: object, *, listed_in: str | Path) -> str:
    """``rel`` when it is a canonical relative POSIX path (``plots/a.png``: no ``.``, ``..`` or
    empty part, not absolute, no backslash or control character), else one line.

    A manifest or a bench result names each file one way only: ``./model.onnx`` and
    ``model.onnx`` are the same file, and two spellings would let one file be listed twice.
    """
    if (
        not isinstance(rel, str)
        or not rel
        or rel.startswith("/")
        or not _REL_PART.match(rel)
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
        raise EdgeKDError(
            f"{listed_in}: path {rel!r} is not a plain relative path inside the bundle "
            f"(like 'model.onnx' or 'plots/a.png': no '.', '..', '//', leading '/', "
            f"backslash or control character)"
        )
    return rel


# ------------------------------------------------------------------------- output files
def output_file(path: str | Path, *, option: str) -> Path:
    """A file path the user named for edgekd to write (``--json PATH``), checked first.

    The write replaces the path by a rename, so anything already there that is not a regular
    file (a directory, a symlink, such as one to ``/proc/self/fd/1``, a character device like
    ``/dev/null``, a FIFO, a socket) would be replaced by a regular file: refused with one line.
    The folder must exist as a folder (created if missing) and be writable.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise EdgeKDError(f"{option}: {path}: cannot be checked ({err.strerror})") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise EdgeKDError(
            f"{option}: {path} exists and is {_kind(mode)}, not a regular file; "
            f"edgekd replaces only regular files: name a new file"
        )
    output_dir(path.parent, option=option)
    return path


def output_dir(path: str | Path, *, option: str) -> Path:
    """A folder the user named for edgekd to write into (``--out DIR``): an existing folder, or
    one that can be made, on a writable file system; else one line."""
    path = Path(path)
    probe = path
    while True:
        try:
            mode = os.stat(probe).st_mode  # follows a symlink to a folder, as mkdir would
        except FileNotFoundError:
            if probe.parent == probe:
                break
            probe = probe.parent
            continue
        except NotADirectoryError:
            mode = None
        except OSError as err:
            raise EdgeKDError(f"{option}: {path}: cannot be checked ({err.strerror})") from None
        if mode is None or not stat.S_ISDIR(mode):
            blocker = probe if mode is not None else _first_non_dir(probe)
            raise EdgeKDError(
                f"{option}: {path}: {blocker} is not a folder, so nothing can be written under it"
            )
        if not os.access(probe, os.W_OK | os.X_OK):
            why = "a read-only file system" if _read_only(probe) else "a folder this user cannot write"
            raise EdgeKDError(f"{option}: {path}: {probe} is on {why}; choose a writable folder")
        break
    return path


def _first_non_dir(path: Path) -> Path:
    for parent in reversed([path, *path.parents]):
        if parent.exists() and not parent.is_dir():
            return parent
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def special_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (``"a symlink"``, ...)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)
