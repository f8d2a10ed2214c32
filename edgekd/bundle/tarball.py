"""The release tarball beside a build's bundle: its path, and writing it from the bundle.

Member names are ``<name>-<version>/<relative path>``, the name and version checked
(:func:`edgekd.paths.release_name`) and every path canonical: nothing made from a manifest's
words leaves the run folder or the archive's top folder.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from edgekd.bundle.manifest import MANIFEST, SIGNATURE, bundle_files, read_manifest
from edgekd.errors import EdgeKDError
from edgekd.files import atomic_output
from edgekd.paths import canonical_relpath, release_name

__all__ = ["tarball_path", "release_tarball", "refresh_tarball", "write_tarball"]


def tarball_path(run_dir: Path, name: str, version: str) -> Path:
    """``run_dir/<name>-<version>.tar.gz``, the name and version checked first
    (:func:`edgekd.paths.release_name`): no path made from them leaves ``run_dir``."""
    return Path(run_dir) / f"{release_name(name, version, listed_in='the release')}.tar.gz"


def release_tarball(bundle: Path) -> Path | None:
    """The release tarball of a build's ``<run>/bundle`` (``<run>/<name>-<version>.tar.gz``, the
    name and version from its manifest, checked), when the bundle is a build's and the tarball
    exists; otherwise None."""
    bundle = Path(bundle)
    if bundle.name != "bundle":
        return None
    manifest = read_manifest(bundle)
    root = release_name(manifest["name"], manifest["version"], listed_in=bundle / MANIFEST)
    path = bundle.parent / f"{root}.tar.gz"
    return path if path.is_file() and not path.is_symlink() else None


def refresh_tarball(bundle: Path) -> Path | None:
    """Rewrite the release tarball beside a build's bundle (:func:`release_tarball`) from the
    bundle as it is now; returns its path, or None when there is none to refresh."""
    path = release_tarball(bundle)
    if path is not None:
        manifest = read_manifest(bundle)
        write_tarball(
            bundle, path, release_name(manifest["name"], manifest["version"], listed_in=bundle / MANIFEST)
        )
    return path


def write_tarball(bundle: Path, path: Path, root: str) -> None:
    """``path`` (gzip tar) of the bundle's regular files under the top folder ``root``.

    Member names are ``root/<relative path>`` with ``root`` a checked release name and each
    relative path canonical (:func:`edgekd.paths.canonical_relpath`): never absolute, never
    ``..``; symlinks in the bundle are not archived (verify reports them)."""
    if "/" in canonical_relpath(root, listed_in=path):
        raise EdgeKDError(f"{path}: top folder {root!r} must be one folder name")
    files = [
        *bundle_files(bundle)[0],
        *(n for n in (MANIFEST, SIGNATURE) if (bundle / n).is_file() and not (bundle / n).is_symlink()),
    ]
    with atomic_output(path) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for rel in sorted(files):
            name = f"{root}/{canonical_relpath(rel, listed_in=bundle)}"
            tar.add(bundle / rel, arcname=name, recursive=False)
