"""``manifest.json``: sha256 and size of every file in a bundle, and the versions that made it.

Torch-free: ``edgekd verify`` runs on the device.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.files import sha256_file, write_json
from edgekd.versions import library_versions

__all__ = ["MANIFEST", "MANIFEST_SCHEMA", "write_manifest", "verify_bundle"]

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "edgekd.manifest/v1"


def _files(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def write_manifest(bundle: Path, *, name: str, version: str, extra: dict | None = None) -> dict:
    """Hash every file under ``bundle`` and write ``manifest.json`` beside them."""
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "name": name,
        "version": version,
        "versions": library_versions(),
        **(extra or {}),
        "files": {rel: {"sha256": sha256_file(bundle / rel), "size": (bundle / rel).stat().st_size}
                  for rel in _files(bundle)},
    }
    write_json(bundle / MANIFEST, manifest)
    return manifest


def verify_bundle(bundle: str | Path) -> list[str]:
    """Check every file against the manifest; one line per problem, empty when all is well."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise EdgeKDError(f"{bundle}: not a bundle directory")
    try:
        manifest = json.loads((bundle / MANIFEST).read_text())
        listed = manifest["files"]
    except FileNotFoundError:
        raise EdgeKDError(f"{bundle}: no {MANIFEST}; not an edgekd bundle") from None
    except (ValueError, KeyError, TypeError):
        raise EdgeKDError(f"{bundle / MANIFEST}: not a valid edgekd manifest (JSON with 'files')") from None
    problems = []
    for rel, expected in sorted(listed.items()):
        path = bundle / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"size mismatch: {rel} is {path.stat().st_size} bytes, "
                            f"manifest says {expected['size']}")
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"checksum mismatch: {rel} (sha256 differs from the manifest)")
    for rel in _files(bundle):
        if rel not in listed:
            problems.append(f"extra file: {rel} (not in the manifest)")
    return problems
