"""Release bundles: the directory, its manifest and its tarball (torch-free)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgekd.bundle.extract import extract_bundle
from edgekd.bundle.manifest import verify_bundle, write_manifest
from edgekd.bundle.write import tarball_path, write_bundle

__all__ = ["verify", "verify_bundle", "write_manifest", "write_bundle", "tarball_path"]


def verify(bundle: str | Path) -> list[str]:
    """Check every file of a bundle (its directory, or its ``.tar.gz``, unpacked safely into a
    temporary folder) against its manifest: one line per problem, empty when all is well."""
    bundle = Path(bundle)
    if bundle.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            return verify_bundle(extract_bundle(bundle, tmp))
    return verify_bundle(bundle)
