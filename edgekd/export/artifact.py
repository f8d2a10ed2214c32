"""What an exporter is given (:class:`ExportContext`) and what it returns (:class:`Artifact`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgekd.data.splits import Split

__all__ = ["ExportContext", "Artifact"]


@dataclass
class ExportContext:
    """What an exporter may use: the fp32 ONNX file, the folder to write into, the torch student,
    the calibration split (training images) and the training split of any epoch (``None``: the
    calibration split), the check split (validation: what an exporter may
    compare its file with fp32 on; the test split stays for the card), the preprocessing, the
    whole ``export`` section, a log."""

    onnx_path: Path
    out_dir: Path
    student: object
    calibration: Split
    check: Split
    mean: tuple
    std: tuple
    image_size: int
    export: object
    threads: int | None = None
    log: Callable[[str], None] = print
    train_for_epoch: Callable[[int], Split] | None = None  # fresh training images, where the source has them
    class_names: tuple[str, ...] = ()  # the check split's classes and groups, to name its cells
    group_names: tuple[str, ...] = ()


@dataclass
class Artifact:
    """A file an exporter wrote (or, with ``skipped``, why it wrote none).

    ``backend`` names the bench backend that runs the file
    (:func:`edgekd.bench.evaluate.logits_through`); ``infer`` (a call on a normalised
    numpy batch returning logits) is set only by an exporter whose file needs a runtime no bench
    backend offers (Torch-TensorRT's compiled module on the GPU). ``extra_files`` (bundle name ->
    path) ship beside the file (the INT8 calibration cache).
    """

    name: str
    file: str | None = None
    path: Path | None = None
    kind: str = "onnx"
    precision: str = "fp32"
    runtime: str | None = None
    backend: str = "onnxruntime"
    export: dict = field(default_factory=dict)
    engine: dict | None = None
    skipped: str | None = None
    infer: Callable[[np.ndarray], np.ndarray] | None = None
    extra_files: dict[str, Path] = field(default_factory=dict)

    def record(self) -> dict:
        """Plain data for the stage's ``artifacts.json`` (no arrays; the path relative)."""
        out = {k: v for k, v in asdict(self).items() if k != "infer" and v is not None}
        if self.path is not None:
            out["path"] = Path(self.path).name
        out["extra_files"] = {name: Path(p).name for name, p in self.extra_files.items()}
        return {k: v for k, v in out.items() if v != {}}
