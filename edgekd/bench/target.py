"""What ``edgekd bench BUNDLE_OR_MODEL`` points at: a bundle directory, or one model file.

A model file inside a bundle (``bundle/model.int8.onnx``) still belongs to that bundle, so its
preprocess.json, evaluation set and card are used. A bare model file uses a ``preprocess.json``
beside it when there is one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgekd.bundle.manifest import MANIFEST
from edgekd.card.io import CARD_JSON
from edgekd.errors import EdgeKDError
from edgekd.paths import inside

__all__ = ["MODEL_KINDS", "Target", "resolve_target", "is_bundle", "read_preprocess"]

MODEL_KINDS = {
    ".onnx": "onnx",
    ".engine": "engine",
    ".plan": "engine",
    ".pt": "torch",
    ".pt2": "torch",
    ".ep": "torch",
    ".ts": "torch",
}


@dataclass
class Target:
    """A resolved bench target.

    ``model`` is the file the user named (None for a bundle directory); ``bundle`` the bundle it
    belongs to (None for a bare file); ``preprocess`` the contents of preprocess.json if any.
    """

    given: Path
    model: Path | None
    bundle: Path | None
    preprocess: dict | None

    def files(self, kind: str) -> list[Path]:
        """Model files of a kind (onnx / engine / torch): the named file, or the bundle's, sorted."""
        if self.model is not None:
            return [self.model] if MODEL_KINDS.get(self.model.suffix) == kind else []
        files = [p for p in self.bundle.iterdir() if p.is_file() and MODEL_KINDS.get(p.suffix) == kind]
        for path in files:
            inside(path.name, self.bundle, listed_in=self.bundle)  # no model symlinked out of it
        return sorted(files)


def is_bundle(path: Path) -> bool:
    return path.is_dir() and ((path / MANIFEST).is_file() or (path / CARD_JSON).is_file())


def read_preprocess(path: Path) -> dict | None:
    """The contents of the preprocess.json at ``path``, checked (JSON with ``input_size`` three
    positive integers ``[C, H, W]``, not a symlink out of its folder); None when there is no
    such file. A bad file is one :class:`~edgekd.errors.EdgeKDError` line::

        size = (read_preprocess(bundle / "preprocess.json") or {}).get("input_size")
    """
    if not path.is_file():
        return None
    inside(path.name, path.parent, listed_in=path.parent)  # not a symlink out of the bundle
    try:
        data = json.loads(path.read_text())
        size = data["input_size"]
    except (ValueError, KeyError, TypeError):
        raise EdgeKDError(f"{path}: not a valid preprocess.json (JSON with input_size [3, H, W])") from None
    if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
        raise EdgeKDError(f"{path}: input_size {size!r} must be three positive integers [C, H, W]")
    return data


def resolve_target(path: str | Path) -> Target:
    """Check that ``path`` is a bundle directory or a model file and find what belongs with it."""
    path = Path(path)
    if not path.exists():
        raise EdgeKDError(
            f"{path}: no such file or directory; give a bundle directory or a model "
            f"file ({', '.join(MODEL_KINDS)})"
        )
    if path.is_dir():
        if not is_bundle(path):
            raise EdgeKDError(
                f"{path}: a directory but not an edgekd bundle (no manifest.json or "
                f"card.json); give a bundle directory or a model file"
            )
        return Target(path, None, path, read_preprocess(path / "preprocess.json"))
    if path.suffix not in MODEL_KINDS:
        raise EdgeKDError(
            f"{path}: unsupported model file {path.suffix or '(no extension)'!r}; "
            f"give a bundle directory or one of: {', '.join(MODEL_KINDS)}"
        )
    bundle = path.parent if is_bundle(path.parent) else None
    return Target(path, path, bundle, read_preprocess(path.parent / "preprocess.json"))
