"""Release bundles: the directory, its manifest and its tarball (torch-free)."""

from edgekd.bundle.manifest import verify_bundle, write_manifest
from edgekd.bundle.write import tarball_path, write_bundle

__all__ = ["verify_bundle", "write_manifest", "write_bundle", "tarball_path"]
