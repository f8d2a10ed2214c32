"""Release bundles: the directory, its manifest and its tarball (torch-free).

One verify: :func:`verify_report` (and :func:`verify`, its problems alone, the API's) checks a
bundle directory or tarball file by file against its manifest
(:func:`edgekd.bundle.manifest.manifest_problems`), its signature whenever one exists
(:func:`edgekd.bundle.signing.verify_signed`: against ``key`` when given; without one, an empty
or malformed signature is a problem, a well-formed one is noted as not checked), and its
release name and version. ``edgekd verify`` and ``edgekd card --check`` both call it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgekd.bundle.extract import extract_bundle
from edgekd.bundle.manifest import manifest_problems, write_manifest
from edgekd.bundle.tarball import tarball_path
from edgekd.bundle.write import write_bundle

__all__ = ["verify", "verify_report", "manifest_problems", "write_manifest", "write_bundle", "tarball_path"]


def verify_report(
    bundle: str | Path, key: str | Path | None = None, *, name: str | None = None, version: str | None = None
) -> tuple[list[str], str]:
    """Check every file of a bundle (its directory, or its ``.tar.gz``, unpacked safely into a
    temporary folder) against its manifest, with the public ``key`` the manifest against its
    signature, and the release's name and version against ``name`` / ``version`` (and a
    tarball's file name and top folder): the problems (one line each) and a note naming the
    release and the signature's state."""
    from edgekd.bundle.signing import verify_signed

    bundle = Path(bundle)
    if bundle.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            return verify_signed(extract_bundle(bundle, tmp), key, name=name, version=version, archive=bundle)
    return verify_signed(bundle, key, name=name, version=version)


def verify(
    bundle: str | Path, *, key: str | Path | None = None, name: str | None = None, version: str | None = None
) -> list[str]:
    """The problems of :func:`verify_report`: empty when every file matches (and the signature
    holds, with ``key``; and the release is the one expected)."""
    return verify_report(bundle, key, name=name, version=version)[0]
