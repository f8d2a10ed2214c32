"""``manifest.json``: sha256 and size of every file in a bundle, and the versions that made it.

A bundle holds regular files only. A manifest names each file once, by its canonical relative
path (``model.onnx``, never ``./model.onnx``), and carries the release's ``name`` and ``version``
(checked by :func:`edgekd.paths.release_name`: the tarball's name is made from them).
:func:`manifest_problems` reads nothing outside the bundle: a manifest entry that is absolute,
climbs out with ``..`` or goes through a symlink is refused with one line (exit 2), and a
symlink anywhere in the bundle is reported, never followed.

Torch-free: ``edgekd verify`` runs on the device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.files import sha256_file, write_json
from edgekd.paths import canonical_relpath, inside, is_inside, release_name, special_file
from edgekd.versions import library_versions

__all__ = [
    "MANIFEST",
    "MANIFEST_SCHEMA",
    "MAX_MANIFEST_BYTES",
    "write_manifest",
    "manifest_problems",
    "read_manifest",
    "manifest_bytes",
    "parse_manifest",
    "bundle_files",
]

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "edgekd.manifest/v1"
SIGNATURE = "manifest.sig"  # signs the manifest, so it cannot be listed in it
MAX_MANIFEST_BYTES = 16 << 20  # a manifest lists files; megabytes of it are not a manifest
_UNLISTED = (MANIFEST, SIGNATURE)


def bundle_files(bundle: Path) -> tuple[list[str], list[str]]:
    """The bundle's regular files and its symlinks (relative POSIX paths, sorted), without the
    manifest and its signature; symlinked directories are listed, not entered."""
    files, links = [], []
    for folder, dirs, names in os.walk(bundle):  # os.walk does not follow directory symlinks
        here = Path(folder)
        for name in dirs + names:
            path = here / name
            rel = path.relative_to(bundle).as_posix()
            if path.is_symlink():
                links.append(rel)
            elif name in names and path.is_file() and rel not in _UNLISTED:
                files.append(rel)
    return sorted(files), sorted(links)


def _files(bundle: Path) -> list[str]:
    return bundle_files(bundle)[0]


def write_manifest(bundle: Path, *, name: str, version: str, extra: dict | None = None) -> dict:
    """Hash every file under ``bundle`` and write ``manifest.json`` beside them."""
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "name": name,
        "version": version,
        "versions": library_versions(),
        **(extra or {}),
        "files": {
            rel: {"sha256": sha256_file(bundle / rel), "size": (bundle / rel).stat().st_size}
            for rel in _files(bundle)
        },
    }
    write_json(bundle / MANIFEST, manifest)
    return manifest


def manifest_bytes(bundle: Path) -> bytes:
    """The bytes of ``bundle/manifest.json``: a regular file of the bundle (never a symlink,
    which could lead out of it), at most :data:`MAX_MANIFEST_BYTES`; else one line."""
    path = Path(bundle) / MANIFEST
    kind = special_file(path)
    if kind == "a symlink":
        raise EdgeKDError(
            f"{path}: a symlink (to {os.path.realpath(path)}); a bundle's manifest is a "
            f"regular file of the bundle and is never followed out of it"
        )
    if kind is not None or not path.exists():
        raise EdgeKDError(f"{bundle}: no {MANIFEST}; not an edgekd bundle")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise EdgeKDError(f"{path}: {size} bytes, above the {MAX_MANIFEST_BYTES} a manifest may have")
    return path.read_bytes()


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise _Duplicate(twice)
    return dict(pairs)


class _Duplicate(ValueError):
    pass


def parse_manifest(data: bytes, bundle: Path) -> dict:
    """A manifest's bytes checked: JSON (no key twice), a release ``name`` and ``version``
    (:func:`~edgekd.paths.release_name`), and ``files`` mapping canonical relative paths inside
    ``bundle`` to ``{sha256, size}``; every problem is one line."""
    path = Path(bundle) / MANIFEST
    try:
        manifest = json.loads(data, object_pairs_hook=_no_duplicates)
        listed = manifest["files"]
    except _Duplicate as err:
        raise EdgeKDError(f"{path}: lists {str(err)!r} twice; each key and file appears once") from None
    except (ValueError, KeyError, TypeError, RecursionError):
        raise EdgeKDError(f"{path}: not a valid edgekd manifest (JSON with 'files')") from None
    release_name(manifest.get("name"), manifest.get("version"), listed_in=path)
    if not isinstance(listed, dict) or not all(
        isinstance(v, dict)
        and isinstance(v.get("sha256"), str)
        and isinstance(v.get("size"), int)
        and not isinstance(v.get("size"), bool)
        for v in listed.values()
    ):
        raise EdgeKDError(f"{path}: 'files' must map each file to {{sha256: string, size: integer}}")
    for rel in listed:
        inside(rel, bundle, listed_in=path)
        canonical_relpath(rel, listed_in=path)
        if rel in _UNLISTED:
            raise EdgeKDError(f"{path}: lists {rel!r}, which a manifest cannot list")
    return manifest


def read_manifest(bundle: Path) -> dict:
    """The manifest of ``bundle``, checked (:func:`manifest_bytes`, :func:`parse_manifest`)."""
    return parse_manifest(manifest_bytes(bundle), bundle)


def manifest_problems(bundle: str | Path) -> list[str]:
    """Check every file against the manifest; one line per problem, empty when all is well.

    Raises :class:`EdgeKDError` (before reading any listed file) when the manifest is unreadable
    or lists a path outside the bundle.
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise EdgeKDError(f"{bundle}: not a bundle directory")
    listed = read_manifest(bundle)["files"]
    files, links = bundle_files(bundle)
    for rel in links:
        if not is_inside(rel, bundle):
            raise EdgeKDError(
                f"{bundle}: {rel} is a symlink to {os.path.realpath(bundle / rel)}, "
                f"outside the bundle; a bundle holds regular files only"
            )
    problems = [f"symlink: {rel} (a bundle holds regular files only; not followed)" for rel in links]
    linked = set(links)
    for rel, expected in sorted(listed.items()):
        path = bundle / rel
        parts = Path(rel).parts
        if any("/".join(parts[:i]) in linked for i in range(1, len(parts) + 1)):
            problems.append(f"not a regular file: {rel} (a symlink)")
        elif not path.is_file():
            problems.append(f"missing: {rel}")
        elif path.stat().st_size != expected["size"]:
            problems.append(
                f"size mismatch: {rel} is {path.stat().st_size} bytes, manifest says {expected['size']}"
            )
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"checksum mismatch: {rel} (sha256 differs from the manifest)")
    for rel in files:
        if rel not in listed:
            problems.append(f"extra file: {rel} (not in the manifest)")
    return problems
