"""The export formats: one table, the way Ultralytics keeps its export formats.

``model.onnx`` (fp32, exported from the torch student by :mod:`edgekd.export.onnx`) is the
source of every other artifact. Each row below turns it into one more file, configured by its own
section under the recipe's ``export`` and evaluated on the test split through the runtime that
will run it (the bench backend the exporter names), so the card's numbers are those of the file
that ships:

==============  ==========================  ===============  ===========  ===========================
recipe key      file                        exporter         runtime      needs
==============  ==========================  ===============  ===========  ===========================
export.int8     model.int8.onnx,            :mod:`.int8`     onnxruntime  onnxruntime (quantization)
                model.int8.trt.onnx,
                calibration.cache
export.fp16     model.fp16.onnx             :mod:`.fp16`     onnxruntime  onnxruntime (float16 tool)
export.tensorrt model.<precision>.engine    :mod:`.tensorrt` tensorrt     TensorRT, cuda-python, a GPU
==============  ==========================  ===============  ===========  ===========================

A new format is one exporter function and one row (:func:`register_format`); the recipe's
``export`` section is assembled from the rows (:class:`ExportConfig`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, create_model, model_validator

from edgekd.config import Section
from edgekd.export.artifact import Artifact, ExportContext
from edgekd.export.fp16 import Fp16Config
from edgekd.export.int8 import Int8Config
from edgekd.export.onnx import OnnxConfig
from edgekd.export.runtime import cpu_runtime_name
from edgekd.export.targets import DEFAULT_TARGET, TARGETS
from edgekd.export.tensorrt import TensorRTConfig

__all__ = ["ExportFormat", "ExportContext", "Artifact", "EXPORT_FORMATS", "register_format", "ExportConfig",
           "build_artifacts"]


@dataclass(frozen=True)
class ExportFormat:
    """One row of the table: the recipe key under ``export``, its settings, the file it writes,
    its exporter, and what it needs."""

    key: str
    config: type[Section]
    file: str
    exporter: Callable[[Section, ExportContext], Artifact | list[Artifact]]
    needs: str


EXPORT_FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    if fmt.key in EXPORT_FORMATS or fmt.key == "onnx":
        raise ValueError(f"export format {fmt.key!r} is registered twice")
    EXPORT_FORMATS[fmt.key] = fmt
    return fmt


def _int8(cfg: Int8Config, ctx: ExportContext) -> list[Artifact]:
    from edgekd.data.splits import cell_weights
    from edgekd.export.int8 import (
        FORMS,
        TENSORRT_CACHE,
        qdq_activation_scales,
        quantize_to_agreement,
        write_tensorrt_cache,
    )

    calibration = (ctx.calibration.cell_balanced(cfg.calibration_samples) if cfg.balanced_calibration
                   else ctx.calibration)
    images = calibration.images[:cfg.calibration_samples]
    weights = cell_weights(ctx.check.labels, ctx.check.groups)
    artifacts = []
    for key in cfg.forms:
        form = FORMS[key]
        search = dict(form=form, method=cfg.method, min_agreement=cfg.min_agreement, check_weights=weights,
                      threads=ctx.threads, log=ctx.log)
        # off and auto: the float-layer search on the student as it is (seconds), then with auto,
        # only where that misses, the search on a fine-tuned copy (minutes); on: the student's
        # all-INT8 try, then the fine-tuned copy
        result = quantize_to_agreement(ctx.onnx_path, ctx.out_dir / form.file, images, ctx.check.images,
                                       ctx.mean, ctx.std, search=cfg.qat != "on", **search)
        if cfg.qat == "on" or (cfg.qat == "auto" and not result.reached):
            result = _with_fine_tuning(cfg, ctx, form, result, images, search)
        kept = ", ".join(result.kept_in_float) or "nothing"
        ctx.log(f"export: {form.file} (INT8 QDQ {form.activations}, {cfg.method} calibration"
                + (", INT8-aware fine-tuned" if result.fine_tuned else "") + "): agreement "
                f"with fp32 on the validation images (cell-weighted) {result.agreement:.4f}, kept in "
                f"float: {kept}"
                + ("" if result.reached else f" (below export.int8.min_agreement {cfg.min_agreement})"))
        extra, cache = {}, {}
        if key == "tensorrt":  # the shipped file's scales, for implicit INT8 from model.onnx
            if result.fine_tuned:
                cache = {"file": None, "left_out": "the shipped file was INT8-aware fine-tuned: its "
                                                   "scales belong to the fine-tuned weights, not "
                                                   "model.onnx's; INT8 engines are built from its "
                                                   "Q/DQ nodes"}
            else:
                scales = qdq_activation_scales(result.path, ctx.onnx_path)
                extra[TENSORRT_CACHE] = write_tensorrt_cache(scales, ctx.out_dir / TENSORRT_CACHE)
                cache = {"file": TENSORRT_CACHE, "scales_from": f"{form.file} (the shipped Q/DQ file)",
                         "tensors": len(scales)}
        artifacts.append(Artifact(
            name=form.name, file=form.file, path=result.path, precision="int8", runtime=cpu_runtime_name(),
            export={"format": "QDQ", "form": f"{key} ({form.runtime_note})", "per_channel": True,
                    "activations": form.activations, "symmetric": form.symmetric, "method": cfg.method,
                    "calibration_samples": int(len(images)),
                    "calibration_draw": "cell_balanced" if cfg.balanced_calibration else "first",
                    "agreement_with_fp32_on_validation": result.agreement,
                    "min_agreement": cfg.min_agreement, "kept_in_float": result.kept_in_float,
                    "float_nodes": result.float_nodes, "tries": result.tries,
                    "qat": cfg.qat, "fine_tuned": result.fine_tuned,
                    **({"fine_tuning": {"steps": cfg.qat_steps, "lr": cfg.qat_lr}}
                       if result.fine_tuned else {}),
                    "quantized_biases": form.quantize_bias,
                    **({"calibration_cache": cache} if cache else {})},
            extra_files=extra))
    return artifacts


def _with_fine_tuning(cfg: Int8Config, ctx: ExportContext, form, before, images, search: dict):
    """Fine-tune a copy of the student under simulated INT8 (:mod:`edgekd.export.qat`), export it
    like ``model.onnx`` and quantize it, its agreement measured against the original student's
    file; ship whichever of ``before`` and this agrees more (every try of both on the card)."""
    import tempfile
    from dataclasses import replace

    from edgekd.export.int8 import quantize_to_agreement
    from edgekd.export.onnx import export_onnx
    from edgekd.export.qat import quantization_aware_finetune

    final = ctx.out_dir / form.file
    with tempfile.TemporaryDirectory(dir=ctx.out_dir) as tmp:
        tuned = quantization_aware_finetune(
            ctx.student, ctx.train_for_epoch or (lambda epoch: ctx.calibration), images, ctx.mean,
            ctx.std, symmetric=form.symmetric, steps=cfg.qat_steps, lr=cfg.qat_lr, log=ctx.log)
        tuned_onnx = export_onnx(tuned, Path(tmp) / "fine_tuned.onnx", image_size=ctx.image_size,
                                 opset=ctx.export.onnx.opset, exporter=ctx.export.onnx.exporter)
        after = quantize_to_agreement(tuned_onnx, Path(tmp) / form.file, images, ctx.check.images, ctx.mean,
                                      ctx.std, reference_path=ctx.onnx_path,
                                      note="after INT8-aware fine-tuning", **search)
        tries = before.tries + after.tries
        if after.agreement > before.agreement:
            after.path.replace(final)
            return replace(after, path=final, tries=tries, fine_tuned=True)
    return replace(before, tries=tries)


def _fp16(cfg: Fp16Config, ctx: ExportContext) -> Artifact:
    from edgekd.export.fp16 import convert_fp16

    path = convert_fp16(ctx.onnx_path, ctx.out_dir / "model.fp16.onnx")
    ctx.log(f"export: {path.name} (FP16, fp32 inputs and outputs)")
    return Artifact(name="onnx_fp16", file=path.name, path=path, precision="fp16", runtime=cpu_runtime_name(),
                    export={"io": "float32"})


def _tensorrt(cfg: TensorRTConfig, ctx: ExportContext) -> Artifact:
    from edgekd.export.tensorrt import build_tensorrt_artifact

    return build_tensorrt_artifact(cfg, ctx)


register_format(ExportFormat("int8", Int8Config, "model.int8.onnx, model.int8.trt.onnx, calibration.cache",
                             _int8, "onnxruntime's quantization tool"))
register_format(ExportFormat("fp16", Fp16Config, "model.fp16.onnx", _fp16, "onnxruntime's float16 converter"))
register_format(ExportFormat("tensorrt", TensorRTConfig, "model.<precision>.engine", _tensorrt,
                             "TensorRT, cuda-python and an NVIDIA GPU (or Torch-TensorRT)"))

def _resolve_target(export):
    """The target fixes model.onnx's opset and exporter where the recipe leaves them out, and
    refuses the ones its TensorRT cannot parse."""
    from edgekd.errors import EdgeKDError
    from edgekd.export.targets import get_target, resolve_onnx_export

    try:
        opset, exporter = resolve_onnx_export(get_target(export.target), opset=export.onnx.opset,
                                              exporter=export.onnx.exporter)
    except EdgeKDError as error:
        raise ValueError(str(error)) from None
    if (export.onnx.opset, export.onnx.exporter) != (opset, exporter):
        export.onnx.opset, export.onnx.exporter = opset, exporter
    return export


def _int8_engine_needs_its_qdq_file(export):
    trt, int8 = export.tensorrt, export.int8
    if trt.enabled and trt.via == "onnx" and trt.precision == "int8" \
            and not (int8.enabled and "tensorrt" in int8.forms):
        raise ValueError("tensorrt.precision: int8 builds the engine from model.int8.trt.onnx (explicit "
                         "quantization); set int8.enabled: true with tensorrt in int8.forms")
    return export


ExportConfig = create_model(
    "ExportConfig", __base__=Section,
    __doc__="``export``: the fp32 ONNX file (``onnx``) and one section per format of the table.",
    __validators__={"int8_engine_qdq": model_validator(mode="after")(_int8_engine_needs_its_qdq_file),
                    "resolve_target": model_validator(mode="after")(_resolve_target)},
    target=(Literal[tuple(TARGETS)], Field(
        DEFAULT_TARGET, description="what the bundle is for (edgekd.export.targets): fixes the ONNX "
                                    "opset and the TensorRT rules every file meant for TensorRT "
                                    "must pass; one of " + ", ".join(TARGETS))),
    onnx=(OnnxConfig, Field(default_factory=OnnxConfig)),
    **{key: (fmt.config, Field(default_factory=fmt.config)) for key, fmt in EXPORT_FORMATS.items()},
)


def build_artifacts(ctx: ExportContext) -> list[Artifact]:
    """Every format the recipe's ``export`` section turns on, written into ``ctx.out_dir`` (an
    exporter returns one artifact or a list of them)."""
    artifacts = []
    for key, fmt in EXPORT_FORMATS.items():
        if getattr(ctx.export, key).enabled:
            made = fmt.exporter(getattr(ctx.export, key), ctx)
            artifacts += made if isinstance(made, list) else [made]
    return artifacts

