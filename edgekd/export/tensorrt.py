"""TensorRT engines: built from the ONNX file with the TensorRT Python API, run without torch.

Building (``build_engine``), TensorRT 8.6 and 10:

1. ``trt.Builder`` -> network (explicit batch; the flag is needed only on 8.x) -> ``trt.OnnxParser``
   reads ``model.onnx``;
2. builder config: workspace limit (``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``),
   ``BuilderFlag.FP16`` / ``BuilderFlag.INT8``; for INT8 an ``IInt8EntropyCalibrator2`` over the
   same calibration images as the INT8 ONNX, with a calibration cache;
3. one optimisation profile for the batch range (min / opt / max);
4. ``build_serialized_network`` -> ``model.<precision>.engine``.

An engine runs only on the GPU model and TensorRT version that built it, so :func:`engine_info`
(TensorRT version, CUDA runtime version, GPU name) goes into the manifest. Device memory goes
through ``cuda-python`` (``cuda.bindings.runtime``, or ``cuda.cudart`` on older releases).

Without TensorRT or a GPU, :func:`tensorrt_status` says why in one line and the export stage
skips the engine (or fails with that line when the recipe says ``required: true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from edgekd.config import Section
from edgekd.errors import EdgeKDError
from edgekd.export.artifact import Artifact, ExportContext
from edgekd.export.runtime import batched_logits, normalise

__all__ = ["TensorRTConfig", "build_tensorrt_artifact", "tensorrt_status", "engine_info", "build_engine",
           "TensorRTClassifier", "profile_shapes", "precision_flags", "calibration_batches"]


class TensorRTConfig(Section):
    """``export.tensorrt``: an engine for the GPU of the build machine (see edgekd.export.tensorrt)."""

    enabled: bool = False
    required: bool = Field(False, description="fail the build when TensorRT or a GPU is missing")
    via: Literal["onnx", "torch_tensorrt"] = "onnx"
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    workspace_mb: int = Field(1024, ge=16)
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(8, ge=1)
    max_batch: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _batch_order(self) -> TensorRTConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"needs min_batch <= opt_batch <= max_batch, got {self.min_batch}, "
                             f"{self.opt_batch}, {self.max_batch}")
        return self


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _check(result):
    """cuda-python returns ``(error, *values)``; raise on an error, return the values."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA error {error}")
    return values[0] if len(values) == 1 else values


def tensorrt_status() -> str | None:
    """``None`` when engines can be built here, else one line saying what is missing."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return ("TensorRT is not installed (the tensorrt Python package; on a Jetson it comes "
                "with JetPack): no engine built")
    try:
        cudart = _cudart()
    except ImportError:
        return "cuda-python is not installed (pip install cuda-python): no engine built"
    try:
        count = _check(cudart.cudaGetDeviceCount())
    except RuntimeError:
        count = 0
    if not count:
        return "no CUDA GPU is visible: no TensorRT engine built"
    return None


def engine_info() -> dict:
    """TensorRT version, CUDA runtime version and GPU name: where an engine can run."""
    import tensorrt as trt

    cudart = _cudart()
    version = int(_check(cudart.cudaRuntimeGetVersion()))
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"tensorrt": trt.__version__, "cuda": f"{version // 1000}.{version % 1000 // 10}",
            "gpu": name.strip("\x00 ")}


def profile_shapes(image_size: int, min_batch: int, opt_batch: int,
                   max_batch: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The optimisation profile's (min, opt, max) input shapes, NCHW."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise EdgeKDError(f"export.tensorrt: batches must satisfy 1 <= min_batch <= opt_batch <= "
                          f"max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    shape = (3, image_size, image_size)
    return (min_batch, *shape), (opt_batch, *shape), (max_batch, *shape)


def precision_flags(precision: str) -> list[str]:
    """The ``trt.BuilderFlag`` names a precision needs. INT8 also allows FP16, so layers that
    INT8 cannot run fall back to FP16 rather than FP32."""
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}
    if precision not in flags:
        raise EdgeKDError(f"export.tensorrt.precision: unknown precision {precision!r}; choose one "
                          f"of: {', '.join(flags)}")
    return flags[precision]


def calibration_batches(images: np.ndarray, mean, std, batch_size: int):
    """Normalised, C-contiguous float32 batches of exactly ``batch_size`` images (TensorRT's
    calibrator takes a fixed batch; a last partial batch is dropped)."""
    for start in range(0, len(images) - batch_size + 1, batch_size):
        yield np.ascontiguousarray(normalise(images[start:start + batch_size], mean, std),
                                   dtype=np.float32)


def _calibrator(images: np.ndarray, mean, std, batch_size: int, cache: Path):
    import tensorrt as trt

    cudart = _cudart()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds the calibration images to TensorRT's entropy calibration, batch by batch."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = calibration_batches(images, mean, std, batch_size)
            self.nbytes = batch_size * 3 * images.shape[1] * images.shape[2] * 4
            self.device = _check(cudart.cudaMalloc(self.nbytes))

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            _check(cudart.cudaMemcpy(self.device, batch.ctypes.data, self.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [int(self.device)]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def build_engine(onnx_path: Path, out_path: Path, *, precision: str, image_size: int,
                 min_batch: int = 1, opt_batch: int = 8, max_batch: int = 32, workspace_mb: int = 1024,
                 calibration_images: np.ndarray | None = None, mean=None, std=None) -> Path:
    """Serialise a TensorRT engine for ``onnx_path`` at ``precision`` (fp32, fp16 or int8)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeKDError(f"export.tensorrt: TensorRT cannot parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    input_name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *profile_shapes(image_size, min_batch, opt_batch, max_batch))
    config.add_optimization_profile(profile)
    for flag in precision_flags(precision):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if precision == "int8":
        if calibration_images is None or len(calibration_images) < opt_batch:
            raise EdgeKDError("export.tensorrt: int8 needs at least opt_batch calibration images")
        config.int8_calibrator = _calibrator(calibration_images, mean, std, opt_batch,
                                             Path(out_path).with_suffix(".calibration.cache"))
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeKDError(f"export.tensorrt: TensorRT could not build a {precision} engine from "
                          f"{onnx_path.name} (see its log above)")
    from edgekd.files import write_atomic

    write_atomic(Path(out_path), bytes(serialized))
    return Path(out_path)


class TensorRTClassifier:
    """An engine with one input and one logits output, run through an execution context.

    ``logits(x)`` takes a normalised float32 batch (N, 3, H, W) within the engine's profile and
    returns float32 logits; ``predict_images`` batches uint8 images like
    :class:`~edgekd.export.runtime.OnnxClassifier`.
    """

    def __init__(self, path: str | Path) -> None:
        status = tensorrt_status()
        if status is not None:
            raise EdgeKDError(f"{path}: cannot run a TensorRT engine here: {status}")
        import tensorrt as trt

        self.path = Path(path)
        self._cudart = _cudart()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EdgeKDError(f"{path}: TensorRT cannot load this engine (built with another "
                              "TensorRT version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) != mode)
        self.batch_size = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self._stream = _check(self._cudart.cudaStreamCreate())

    def logits(self, x: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=np.float32)
        d_in = _check(cudart.cudaMalloc(x.nbytes))
        d_out = _check(cudart.cudaMalloc(out.nbytes))
        try:
            to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            _check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, to_device, self._stream))
            self.context.set_tensor_address(self.input_name, int(d_in))
            self.context.set_tensor_address(self.output_name, int(d_out))
            if not self.context.execute_async_v3(self._stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, to_host, self._stream))
            _check(cudart.cudaStreamSynchronize(self._stream))
        finally:
            cudart.cudaFree(d_in)
            cudart.cudaFree(d_out)
        return out

    def predict_images(self, images: np.ndarray, mean, std) -> np.ndarray:
        return batched_logits(self.logits, images, mean, std, batch_size=self.batch_size)


def build_tensorrt_artifact(cfg: TensorRTConfig, ctx: ExportContext) -> Artifact:
    """The ``export.tensorrt`` row of :mod:`edgekd.export.formats`: an engine from the ONNX file
    (``via: onnx``) or a Torch-TensorRT program from the student (``via: torch_tensorrt``); a
    skipped artifact with the reason when this machine cannot build one (an error when
    ``required``)."""
    if cfg.via == "torch_tensorrt":
        try:
            import torch_tensorrt  # noqa: F401
        except ImportError:
            raise EdgeKDError('export.tensorrt.via: torch_tensorrt needs Torch-TensorRT; install it '
                              'with: pip install "edgekd[tensorrt]"') from None
    status = tensorrt_status()
    name = f"tensorrt_{cfg.precision}"
    if status is not None:
        if cfg.required:
            raise EdgeKDError(f"export.tensorrt (required): {status}")
        ctx.log(f"export: TensorRT skipped: {status}")
        return Artifact(name=name, skipped=status)
    if cfg.via == "torch_tensorrt":
        return _torch_tensorrt(cfg, ctx)
    path = build_engine(ctx.onnx_path, ctx.out_dir / f"model.{cfg.precision}.engine",
                        precision=cfg.precision, image_size=ctx.image_size, min_batch=cfg.min_batch,
                        opt_batch=cfg.opt_batch, max_batch=cfg.max_batch, workspace_mb=cfg.workspace_mb,
                        calibration_images=ctx.calibration_images[:ctx.export.int8.calibration_samples],
                        mean=ctx.mean, std=ctx.std)
    info = engine_info()
    ctx.log(f"export: {path.name} (TensorRT {info['tensorrt']}, {info['gpu']})")
    return Artifact(name=name, file=path.name, path=path, kind="tensorrt", precision=cfg.precision,
                    runtime=f"TensorRT {info['tensorrt']} on {info['gpu']}", backend="tensorrt",
                    export={**info, "batch": [cfg.min_batch, cfg.opt_batch, cfg.max_batch]}, engine=info)


def _torch_tensorrt(cfg: TensorRTConfig, ctx: ExportContext) -> Artifact:
    """Torch-TensorRT's dynamo frontend; saved as an ExportedProgram that loads with
    ``torch.export.load`` (no edgekd or timm code needed)."""
    import torch
    import torch_tensorrt

    precisions = {"fp32": {torch.float32}, "fp16": {torch.float16, torch.float32},
                  "int8": {torch.int8, torch.float16, torch.float32}}
    shape = (3, ctx.image_size, ctx.image_size)
    model = ctx.student.eval().cuda()
    compiled = torch_tensorrt.compile(
        model, ir="dynamo",
        inputs=[torch_tensorrt.Input(min_shape=(cfg.min_batch, *shape), opt_shape=(cfg.opt_batch, *shape),
                                     max_shape=(cfg.max_batch, *shape), dtype=torch.float32)],
        enabled_precisions=precisions[cfg.precision], workspace_size=cfg.workspace_mb << 20)
    path = ctx.out_dir / f"model.{cfg.precision}.ep"
    example = torch.zeros((cfg.opt_batch, *shape), device="cuda")
    torch_tensorrt.save(compiled, str(path), output_format="exported_program", inputs=[example])

    def infer(x: np.ndarray) -> np.ndarray:  # at most max_batch images per call
        with torch.no_grad():
            return np.concatenate([
                compiled(torch.from_numpy(x[i:i + cfg.max_batch]).cuda()).float().cpu().numpy()
                for i in range(0, len(x), cfg.max_batch)])

    ctx.log(f"export: {path.name} (Torch-TensorRT {torch_tensorrt.__version__})")
    return Artifact(name=f"torch_tensorrt_{cfg.precision}", file=path.name, path=path, kind="torch_tensorrt",
                    precision=cfg.precision, runtime=f"Torch-TensorRT {torch_tensorrt.__version__}",
                    backend="torch", export={"via": "torch_tensorrt"}, infer=infer)
