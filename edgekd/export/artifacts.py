"""The artifacts built from ``model.onnx`` (INT8, FP16, TensorRT), each run through its own
runtime on the test split: the card's numbers are those of the file that ships."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError

__all__ = ["build_artifacts"]


def build_artifacts(cfg, onnx_path: Path, out_dir: Path, *, student, calibration_images: np.ndarray,
                    test_images: np.ndarray, mean, std, image_size: int, threads: int | None,
                    log: Callable[[str], None]) -> list[dict]:
    """Build every artifact ``cfg`` (``recipe.export``) asks for into ``out_dir``.

    Returns one record per artifact: ``name``, ``file``, ``path``, ``runtime``, ``precision``,
    ``logits`` on the test images and export details; a skipped TensorRT engine is a record
    with ``skipped`` and the reason.
    """
    import onnxruntime

    from edgekd.export.runtime import OnnxClassifier

    records = []
    ort_runtime = f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"
    if cfg.int8.enabled:
        from edgekd.export.int8 import quantize_int8

        path = quantize_int8(onnx_path, out_dir / "model.int8.onnx",
                             calibration_images[:cfg.int8.calibration_samples], mean, std,
                             method=cfg.int8.method, activations=cfg.int8.activations)
        records.append({"name": "onnx_int8", "file": path.name, "path": path, "kind": "onnx",
                        "precision": "int8", "runtime": ort_runtime,
                        "export": {"format": "QDQ", "per_channel": True, "method": cfg.int8.method,
                                   "calibration_samples": int(min(len(calibration_images),
                                                                  cfg.int8.calibration_samples))},
                        "logits": OnnxClassifier(path, threads=threads).predict_images(
                            test_images, mean, std)})
        log(f"export: {path.name} (INT8 QDQ, {cfg.int8.method} calibration)")
    if cfg.fp16.enabled:
        from edgekd.export.fp16 import convert_fp16

        path = convert_fp16(onnx_path, out_dir / "model.fp16.onnx")
        records.append({"name": "onnx_fp16", "file": path.name, "path": path, "kind": "onnx",
                        "precision": "fp16", "runtime": ort_runtime,
                        "export": {"io": "float32"},
                        "logits": OnnxClassifier(path, threads=threads).predict_images(
                            test_images, mean, std)})
        log(f"export: {path.name} (FP16, fp32 inputs and outputs)")
    if cfg.tensorrt.enabled:
        records.append(_tensorrt(cfg.tensorrt, onnx_path, out_dir, student=student,
                                 calibration_images=calibration_images[:cfg.int8.calibration_samples],
                                 test_images=test_images, mean=mean, std=std,
                                 image_size=image_size, log=log))
    return records


def _tensorrt(cfg, onnx_path: Path, out_dir: Path, *, student, calibration_images, test_images, mean,
              std, image_size: int, log) -> dict:
    if cfg.via == "torch_tensorrt":
        try:
            import torch_tensorrt  # noqa: F401
        except ImportError:
            raise EdgeKDError('export.tensorrt.via: torch_tensorrt needs Torch-TensorRT; install it '
                              'with: pip install "edgekd[tensorrt]"') from None
    from edgekd.export.tensorrt import TensorRTClassifier, build_engine, engine_info, tensorrt_status

    status = tensorrt_status()
    if status is not None:
        if cfg.required:
            raise EdgeKDError(f"export.tensorrt (required): {status}")
        log(f"export: TensorRT skipped: {status}")
        return {"name": f"tensorrt_{cfg.precision}", "skipped": status}
    if cfg.via == "torch_tensorrt":
        return _torch_tensorrt(cfg, out_dir, student=student, test_images=test_images, mean=mean,
                               std=std, image_size=image_size, log=log)
    path = build_engine(onnx_path, out_dir / f"model.{cfg.precision}.engine", precision=cfg.precision,
                        image_size=image_size, min_batch=cfg.min_batch, opt_batch=cfg.opt_batch,
                        max_batch=cfg.max_batch, workspace_mb=cfg.workspace_mb,
                        calibration_images=calibration_images, mean=mean, std=std)
    info = engine_info()
    log(f"export: {path.name} (TensorRT {info['tensorrt']}, {info['gpu']})")
    return {"name": f"tensorrt_{cfg.precision}", "file": path.name, "path": path, "kind": "tensorrt",
            "precision": cfg.precision, "runtime": f"TensorRT {info['tensorrt']} on {info['gpu']}",
            "export": {**info, "batch": [cfg.min_batch, cfg.opt_batch, cfg.max_batch]},
            "engine": info,
            "logits": TensorRTClassifier(path).predict_images(test_images, mean, std)}


def _torch_tensorrt(cfg, out_dir: Path, *, student, test_images, mean, std, image_size, log) -> dict:
    """Torch-TensorRT's dynamo frontend; saved as an ExportedProgram that loads with
    ``torch.export.load`` (no edgekd or timm code needed)."""
    import torch
    import torch_tensorrt

    from edgekd.train.tensors import to_input

    precisions = {"fp32": {torch.float32}, "fp16": {torch.float16, torch.float32},
                  "int8": {torch.int8, torch.float16, torch.float32}}
    shape = (3, image_size, image_size)
    model = student.eval().cuda()
    compiled = torch_tensorrt.compile(
        model, ir="dynamo",
        inputs=[torch_tensorrt.Input(min_shape=(cfg.min_batch, *shape), opt_shape=(cfg.opt_batch, *shape),
                                     max_shape=(cfg.max_batch, *shape), dtype=torch.float32)],
        enabled_precisions=precisions[cfg.precision], workspace_size=cfg.workspace_mb << 20)
    path = out_dir / f"model.{cfg.precision}.ep"
    example = torch.zeros((cfg.opt_batch, *shape), device="cuda")
    torch_tensorrt.save(compiled, str(path), output_format="exported_program", inputs=[example])
    with torch.no_grad():
        logits = np.concatenate([
            compiled(to_input(test_images[i:i + cfg.max_batch], mean, std, "cuda")).float().cpu().numpy()
            for i in range(0, len(test_images), cfg.max_batch)])
    log(f"export: {path.name} (Torch-TensorRT {torch_tensorrt.__version__})")
    return {"name": f"torch_tensorrt_{cfg.precision}", "file": path.name, "path": path,
            "kind": "torch_tensorrt", "precision": cfg.precision,
            "runtime": f"Torch-TensorRT {torch_tensorrt.__version__}", "export": {"via": "torch_tensorrt"},
            "logits": logits}
