"""The files a bundle's artifacts live in: one table, and every module asks it for a name.

=============  ====================  =========  ===========  ====================================
artifact       file                  precision  runs on      meant for
=============  ====================  =========  ===========  ====================================
onnx           model.onnx            fp32       onnxruntime  every runtime; TensorRT's fp32/fp16
onnx_int8      model.int8.onnx       int8       onnxruntime  onnxruntime's CPU kernels (U8S8)
onnx_int8_trt  model.int8.trt.onnx   int8       onnxruntime  TensorRT (symmetric S8S8 Q/DQ), with
               + calibration.cache                           TensorRT's calibration cache
onnx_fp16      model.fp16.onnx       fp16       onnxruntime  GPUs; TensorRT 11's fp16 source
tensorrt_<p>   model.<p>.engine      p          tensorrt     the GPU and TensorRT that built it
=============  ====================  =========  ===========  ====================================

Numpy-free and torch-free: the device side reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.registry import Registry

__all__ = [
    "ArtifactFile",
    "ARTIFACT_FILES",
    "MODEL_ONNX",
    "INT8_ONNX",
    "INT8_TRT_ONNX",
    "FP16_ONNX",
    "CALIBRATION_CACHE",
    "engine_file_name",
    "engine_model_name",
    "tensorrt_files",
]


@dataclass(frozen=True)
class ArtifactFile:
    """One exported file: its model name on the card, its file name, the precision it computes
    in, the bench backend that scores and runs it, the files shipped beside it, and whether it is
    meant for TensorRT (checked against the target's parser rules, :mod:`.tensorrt_check`)."""

    name: str
    file: str
    precision: str
    backend: str = "onnxruntime"
    companions: tuple[str, ...] = ()
    for_tensorrt: bool = False


ARTIFACT_FILES: Registry[ArtifactFile] = Registry("artifact")
for _row in (
    ArtifactFile("onnx", "model.onnx", "fp32", for_tensorrt=True),
    ArtifactFile("onnx_int8", "model.int8.onnx", "int8"),
    ArtifactFile(
        "onnx_int8_trt", "model.int8.trt.onnx", "int8", companions=("calibration.cache",), for_tensorrt=True
    ),
    ArtifactFile("onnx_fp16", "model.fp16.onnx", "fp16", for_tensorrt=True),
):
    ARTIFACT_FILES.add(_row.name, _row)

MODEL_ONNX = ARTIFACT_FILES["onnx"].file
INT8_ONNX = ARTIFACT_FILES["onnx_int8"].file
INT8_TRT_ONNX = ARTIFACT_FILES["onnx_int8_trt"].file
FP16_ONNX = ARTIFACT_FILES["onnx_fp16"].file
CALIBRATION_CACHE = ARTIFACT_FILES["onnx_int8_trt"].companions[0]


def tensorrt_files() -> dict[str, ArtifactFile]:
    """file name -> row, of the files meant for TensorRT."""
    return {row.file: row for row in ARTIFACT_FILES.values() if row.for_tensorrt}


def engine_file_name(precision: str, dla_core: int | None = None) -> str:
    """A TensorRT engine's file: ``model.fp16.engine``, ``model.int8.dla0.engine``."""
    return f"model.{precision}{'' if dla_core is None else f'.dla{dla_core}'}.engine"


def engine_model_name(precision: str, dla_core: int | None = None) -> str:
    """A TensorRT engine's model name on the card: ``tensorrt_fp16``, ``tensorrt_int8_dla0``."""
    return f"tensorrt_{precision}{'' if dla_core is None else f'_dla{dla_core}'}"
