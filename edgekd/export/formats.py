"""The export formats: one table, the way Ultralytics keeps its export formats.

Each row is a section of the recipe's ``export``, the artifacts it writes (rows of
:data:`edgekd.export.files.ARTIFACT_FILES`, which name their files, precision and the runtime
that scores them), its exporter and what it needs:

==============  =================================  ===============  ===========================
recipe key      artifacts (files)                  exporter         needs
==============  =================================  ===============  ===========================
export.onnx     onnx (model.onnx)                  the export stage torch's ONNX exporter
                                                   (from the torch
                                                   student)
export.int8     onnx_int8 (model.int8.onnx),       :func:`.int8.    onnxruntime's quantization
                onnx_int8_trt (model.int8.trt.     export_int8`
                onnx, calibration.cache)
export.fp16     onnx_fp16 (model.fp16.onnx)        :func:`.fp16.    onnxruntime's float16 tool
                                                   export_fp16`
export.tensorrt tensorrt_<precision>               :func:`.tensorrt TensorRT, cuda-python, a GPU
                (model.<precision>.engine)         .build_tensorrt_
                                                   artifact`
==============  =================================  ===============  ===========================

``model.onnx`` is the source of every other artifact; the others are built from it in table
order by :func:`build_artifacts`, and each is scored on the test split through the runtime that
will run it (:func:`edgekd.bench.evaluate.logits_through`). A new format is one exporter
function and one row; the recipe's ``export`` section is assembled from the rows
(:class:`ExportConfig`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, create_model, model_validator

from edgekd.config import Section
from edgekd.context import step
from edgekd.export.artifact import Artifact, ExportContext
from edgekd.export.fp16 import Fp16Config, export_fp16
from edgekd.export.int8 import Int8Config, export_int8
from edgekd.export.onnx import OnnxConfig
from edgekd.export.targets import DEFAULT_TARGET, TARGETS
from edgekd.export.tensorrt import TensorRTConfig, build_tensorrt_artifact
from edgekd.registry import Registry

__all__ = [
    "ExportFormat",
    "ExportContext",
    "Artifact",
    "EXPORT_FORMATS",
    "ExportConfig",
    "build_artifacts",
    "built_from_onnx",
]


@dataclass(frozen=True)
class ExportFormat:
    """One row of the table: the recipe key under ``export``, its settings, the artifacts it
    writes (names of :data:`~edgekd.export.files.ARTIFACT_FILES`; an engine's name depends on
    its precision), its exporter (``None`` for ``onnx``, which the export stage writes from the
    torch student), and what it needs."""

    key: str
    config: type[Section]
    artifacts: tuple[str, ...]
    exporter: Callable[[Section, ExportContext], Artifact | list[Artifact]] | None
    needs: str


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format")
for _row in (
    ExportFormat("onnx", OnnxConfig, ("onnx",), None, "torch's ONNX exporter (dynamo or TorchScript)"),
    ExportFormat(
        "int8", Int8Config, ("onnx_int8", "onnx_int8_trt"), export_int8, "onnxruntime's quantization tool"
    ),
    ExportFormat("fp16", Fp16Config, ("onnx_fp16",), export_fp16, "onnxruntime's float16 converter"),
    ExportFormat(
        "tensorrt",
        TensorRTConfig,
        (),
        build_tensorrt_artifact,
        "TensorRT, cuda-python and an NVIDIA GPU (or Torch-TensorRT)",
    ),
):
    EXPORT_FORMATS.add(_row.key, _row)


def built_from_onnx() -> list[ExportFormat]:
    """The rows built from ``model.onnx`` (every row but ``onnx``), in table order."""
    return [fmt for fmt in EXPORT_FORMATS.values() if fmt.exporter is not None]


def _resolve_target(export):
    """The target fixes model.onnx's opset and exporter where the recipe leaves them out, and
    refuses the ones its TensorRT cannot parse."""
    from edgekd.errors import EdgeKDError
    from edgekd.export.targets import get_target, resolve_onnx_export

    try:
        opset, exporter = resolve_onnx_export(
            get_target(export.target), opset=export.onnx.opset, exporter=export.onnx.exporter
        )
    except EdgeKDError as error:
        raise ValueError(str(error)) from None
    if (export.onnx.opset, export.onnx.exporter) != (opset, exporter):
        export.onnx.opset, export.onnx.exporter = opset, exporter
    return export


def _int8_engine_needs_its_qdq_file(export):
    trt, int8 = export.tensorrt, export.int8
    if (
        trt.enabled
        and trt.via == "onnx"
        and trt.precision == "int8"
        and not (int8.enabled and "tensorrt" in int8.forms)
    ):
        raise ValueError(
            "tensorrt.precision: int8 builds the engine from model.int8.trt.onnx (explicit "
            "quantization); set int8.enabled: true with tensorrt in int8.forms"
        )
    return export


ExportConfig = create_model(
    "ExportConfig",
    __base__=Section,
    __doc__="``export``: the deployment target and one section per row of the format table.",
    __validators__={
        "int8_engine_qdq": model_validator(mode="after")(_int8_engine_needs_its_qdq_file),
        "resolve_target": model_validator(mode="after")(_resolve_target),
    },
    target=(
        Literal[tuple(TARGETS)],
        Field(
            DEFAULT_TARGET,
            description="what the bundle is for (edgekd.export.targets): fixes the ONNX "
            "opset and the TensorRT rules every file meant for TensorRT "
            "must pass; one of " + ", ".join(TARGETS),
        ),
    ),
    **{key: (fmt.config, Field(default_factory=fmt.config)) for key, fmt in EXPORT_FORMATS.items()},
)


def build_artifacts(ctx: ExportContext) -> list[Artifact]:
    """Every format the recipe's ``export`` section turns on, built from ``model.onnx`` into
    ``ctx.out_dir`` in table order (an exporter returns one artifact or a list of them)."""
    artifacts = []
    for fmt in built_from_onnx():
        if getattr(ctx.export, fmt.key).enabled:
            with step(ctx.log, f"exporting {fmt.key} from {ctx.onnx_path.name}"):
                made = fmt.exporter(getattr(ctx.export, fmt.key), ctx)
            artifacts += made if isinstance(made, list) else [made]
    return artifacts
