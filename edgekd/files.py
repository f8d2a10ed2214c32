"""File helpers: atomic writes, JSON, hashes.

The modules added for containment, locking and signing import them from here, where the
restructured layout keeps them; on this branch they still live in :mod:`edgekd.stages`.
"""

from edgekd.stages import read_json, sha256_file, write_atomic, write_json

__all__ = ["write_atomic", "write_json", "read_json", "sha256_file"]
