"""Stage directories of a build: hash-keyed reuse, resume and atomic writes.

A stage lives in ``runs/<name>/stages/<stage>/``. Its key is the sha256 of everything that
determines its output (its resolved config and the keys of the stages it reads). ``key.json`` is
written when the stage starts and ``done.json`` when it has finished: a stage whose ``done.json``
holds the current key is reused; one whose ``key.json`` matches but is not done resumes from its
last checkpoint; any other content is stale and is cleared.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.files import read_json, sha256_json, write_json

__all__ = ["Stage", "STAGE_FORMAT"]

STAGE_FORMAT = 2  # bump when a stage's files change meaning, so old runs are not reused


class Stage:
    """One hash-keyed stage of a build."""

    def __init__(self, run_dir: Path, name: str, inputs: dict[str, Any]) -> None:
        self.name = name
        self.dir = Path(run_dir) / "stages" / name
        self.inputs = {"format": STAGE_FORMAT, "stage": name, **inputs}
        self.key = sha256_json(self.inputs)

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

    def run(self, work: Callable[[Stage], None]) -> str:
        """Reuse the stage when it is done with this key; otherwise start it, call ``work(self)``
        (which writes the stage's files) and mark it done.

        Returns the stage's status in a build's summary: ``"reused"``, or ``"trained"`` (the
        word every stage uses for "computed by this run", exports included)."""
        if self.done:
            return "reused"
        self.start()
        work(self)
        self.finish()
        return "trained"
