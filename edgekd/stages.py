"""Stage directories of a build: hash-keyed reuse, resume and atomic writes.

A stage lives in ``runs/<name>/stages/<stage>/``. Its key is the sha256 of everything that
determines its output (its resolved config and the keys of the stages it reads). ``key.json`` is
written when the stage starts and ``done.json`` when it has finished: a stage whose ``done.json``
holds the current key is reused; one whose ``key.json`` matches but is not done resumes from its
last checkpoint; any other content is stale and is cleared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgekd.recipe import canonical_json

__all__ = ["Stage", "write_atomic", "write_json", "read_json", "sha256_file"]

STAGE_FORMAT = 2  # bump when a stage's files change meaning, so old runs are not reused


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so that readers see either the old content or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a bundle must be readable like any file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Stage:
    """One hash-keyed stage of a build."""

    def __init__(self, run_dir: Path, name: str, inputs: dict[str, Any]) -> None:
        self.name = name
        self.dir = Path(run_dir) / "stages" / name
        self.inputs = {"format": STAGE_FORMAT, "stage": name, **inputs}
        self.key = hashlib.sha256(canonical_json(self.inputs).encode()).hexdigest()

    def _key_in(self, filename: str) -> str | None:
        path = self.dir / filename
        try:
            return read_json(path).get("key")
        except (OSError, ValueError, AttributeError):
            return None

    @property
    def done(self) -> bool:
        return self._key_in("done.json") == self.key

    def start(self) -> bool:
        """Prepare the directory; True when earlier work of this same key can be resumed."""
        if self._key_in("key.json") == self.key:
            return True
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        write_json(self.dir / "key.json", {"key": self.key, "inputs": self.inputs})
        return False

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        write_json(self.dir / "done.json", {"key": self.key, **(summary or {})})

    def path(self, filename: str) -> Path:
        return self.dir / filename
