"""Release bundles: the directory, its manifest and its tarball (torch-free)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgekd.bundle.extract import extract_bundle
from edgekd.bundle.manifest import verify_bundle, write_manifest
from edgekd.bundle.write import tarball_path, write_bundle

__all__ = ["verify", "verify_report", "verify_bundle", "write_manifest", "write_bundle", "tarball_path"]


def verify_report(bundle: str | Path, key: str | Path | None = None) -> tuple[list[str], str]:
    """Check every file of a bundle (its directory, or its ``.tar.gz``, unpacked safely into a
    temporary folder) against its manifest, and with the public ``key`` the manifest against its
    signature: the problems (one line each) and a note on the signature."""
    from edgekd.bundle.signing import verify_signed

    bundle = Path(bundle)
    if bundle.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            return verify_signed(extract_bundle(bundle, tmp), key)
    return verify_signed(bundle, key)


def verify(bundle: str | Path, *, key: str | Path | None = None) -> list[str]:
    """The problems of :func:`verify_report`: empty when every file matches (and the signature
    holds, with ``key``)."""
    return verify_report(bundle, key)[0]
