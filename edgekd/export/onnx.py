"""Export a trained classifier to ONNX with a dynamic batch axis, and check it against torch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from edgekd.config import Section
from edgekd.export.runtime import OnnxClassifier

if TYPE_CHECKING:  # torch is imported where a model is exported: the recipe reads OnnxConfig
    import torch

__all__ = ["export_onnx", "compare_with_torch"]

INPUT_NAME, OUTPUT_NAME = "images", "logits"


class OnnxConfig(Section):
    """``export.onnx``: the fp32 ONNX file every other artifact starts from. Opset and exporter
    default to what ``export.target`` parses (:func:`edgekd.export.targets.resolve_onnx_export`)."""

    exporter: Literal["torchscript", "dynamo"] | None = Field(
        None,
        description="dynamo (torch.export; the exporter torch keeps; opset 18 or newer) or "
        "torchscript (deprecated by torch; opset 17 and lower, what TensorRT 8.5/8.6 "
        "on JetPack 5 and 6.0 parse); default: from export.target",
    )
    opset: int | None = Field(
        None, ge=13, le=23, description="default: 18 where export.target parses it, else the target's ceiling"
    )
    min_agreement: float = Field(
        0.999, ge=0.0, le=1.0, description="argmax agreement with torch below which the build fails"
    )


def export_onnx(
    model: torch.nn.Module, path: Path, *, image_size: int, opset: int, exporter: str = "torchscript"
) -> Path:
    """Write ``model`` (eval mode) to ``path`` as one self-contained ONNX file, batch axis dynamic.

    ``exporter="dynamo"`` (the default) uses ``torch.export``, the exporter torch keeps, and writes
    opset 18 or newer (its down-conversion to 17 fails on EfficientNet's reductions); it matched
    TorchScript's file on every test image but takes many times longer
    (``benchmarks/bench_exporters.py`` compares the two). ``exporter="torchscript"`` is
    torch's tracing exporter, deprecated by torch (its warning is shown): it writes any opset from
    13, and opset 17 is what TensorRT 8.5/8.6 (JetPack 5 and 6.0) parse.
    """
    import torch

    model = model.eval()
    example = torch.zeros(2, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    tmp = path.with_name(f".{path.name}.tmp")
    names: dict[str, Any] = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    try:
        with _quiet_exporter():
            if exporter == "dynamo":
                batch = torch.export.Dim("batch", min=1, max=4096)
                program = torch.onnx.export(
                    model,
                    (example,),
                    dynamo=True,
                    external_data=False,
                    dynamic_shapes=({0: batch},),
                    verbose=False,
                    **names,
                )
                assert program is not None  # dynamo=True always returns the program
                program.save(str(tmp), external_data=False)
            elif exporter == "torchscript":
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    dynamo=False,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    **names,
                )
            else:
                raise ValueError(f"unknown exporter {exporter!r}")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class _quiet_exporter:
    """The exporter logs its progress at INFO through ``torch.onnx``; keep the build output clean."""

    def __enter__(self):
        self.logger = logging.getLogger("torch.onnx")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def compare_with_torch(
    model: torch.nn.Module, onnx_path: Path, images: np.ndarray, mean, std, *, threads: int | None = None
) -> dict:
    """Run the same real images through torch and onnxruntime; report how closely they agree."""
    from edgekd.models.tensors import predict_logits

    torch_logits = predict_logits(model, images, mean, std)
    ort_logits = OnnxClassifier(onnx_path, threads=threads).predict_images(images, mean, std)
    return {
        "images": int(len(images)),
        "max_abs_diff": float(np.abs(torch_logits - ort_logits).max()),
        "argmax_agreement": float((torch_logits.argmax(1) == ort_logits.argmax(1)).mean()),
    }
