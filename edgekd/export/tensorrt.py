"""TensorRT engines: built from the ONNX file with the TensorRT Python API, run without torch.

Building (``build_engine``), TensorRT 8.6 and 10:

1. ``trt.Builder`` -> network (explicit batch; the flag is needed only on 8.x) -> ``trt.OnnxParser``
   reads ``model.onnx``;
2. builder config: workspace limit (``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``),
   ``BuilderFlag.FP16`` / ``BuilderFlag.INT8``; for INT8 the scales come from the Q/DQ nodes of
   the explicitly quantized ``model.int8.trt.onnx`` (no calibrator: the build machine and, by
   default, ``edgekd engine``), or from the bundle's ``calibration.cache`` read by a calibrator
   that never sees an image (:func:`cache_calibrator`; implicit quantization, deprecated since
   TensorRT 10.1, for engines built from ``model.onnx``);
3. optionally a DLA core (``default_device_type = DeviceType.DLA``, ``DLA_core``,
   ``BuilderFlag.GPU_FALLBACK``; fp16 or int8 only): :func:`device_settings`;
4. one optimisation profile for the batch range (min / opt / max);
5. ``build_serialized_network`` -> ``model.<precision>[.dla<N>].engine``.

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
from edgekd.export.runtime import batched_logits

__all__ = ["TensorRTConfig", "build_tensorrt_artifact", "tensorrt_status", "engine_info", "build_engine",
           "TensorRTClassifier", "DeviceBuffers", "profile_shapes", "precision_flags", "device_settings",
           "calibration_algorithm", "CacheReader", "cache_calibrator"]


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


def device_settings(precision: str, dla_core: int | None) -> dict:
    """Where the engine's layers run: the GPU, or DLA core ``dla_core`` with GPU fallback.

    Returns ``{"device": "GPU" | "DLA", "dla_core": N | None, "flags": [...]}`` with the
    ``trt.BuilderFlag`` names to set besides the precision's: DLA runs fp16 and int8 layers only,
    and a layer DLA cannot run falls back to the GPU (``GPU_FALLBACK``) instead of failing the build.
    """
    if dla_core is None:
        return {"device": "GPU", "dla_core": None, "flags": []}
    if isinstance(dla_core, bool) or not isinstance(dla_core, int) or dla_core < 0:
        raise EdgeKDError(f"--dla-core: {dla_core!r}; must be a DLA core number (0 or 1 on Jetson "
                          f"AGX/NX Orin)")
    if precision not in ("fp16", "int8"):
        raise EdgeKDError(f"--dla-core {dla_core} with --precision {precision}: DLA runs fp16 or int8 "
                          f"only; choose --precision fp16 or int8")
    return {"device": "DLA", "dla_core": dla_core, "flags": ["GPU_FALLBACK"]}


# The first line of a TensorRT calibration cache names the algorithm that wrote it
# ("TRT-100300-EntropyCalibration2"); a cache is read back by a calibrator of the same algorithm.
_CALIBRATORS = {"EntropyCalibration2": "IInt8EntropyCalibrator2",
                "EntropyCalibration": "IInt8EntropyCalibrator",
                "MinMaxCalibration": "IInt8MinMaxCalibrator",
                "LegacyCalibration": "IInt8LegacyCalibrator"}


def calibration_algorithm(cache: bytes, *, where: str = "calibration.cache") -> str:
    """The ``trt`` calibrator class that reads ``cache`` (a TensorRT calibration cache: a header
    line ``TRT-<version>-<algorithm>``, then ``tensor: hex scale`` lines)."""
    header = cache.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    parts = header.split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT" or parts[2] not in _CALIBRATORS:
        raise EdgeKDError(f"{where}: not a TensorRT calibration cache (first line {header[:60]!r}; "
                          f"expected TRT-<version>-<algorithm>, algorithm one of "
                          f"{', '.join(_CALIBRATORS)})")
    return _CALIBRATORS[parts[2]]


class CacheReader:
    """The calibrator methods of a cache-only calibration: no batch is ever given (TensorRT reads
    every scale from the cache), and the cache is never rewritten. Mixed into the ``trt``
    calibrator class the cache names by :func:`cache_calibrator`."""

    def __init__(self, cache: bytes, batch_size: int = 1) -> None:
        self._cache = bytes(cache)
        self._batch_size = batch_size

    def get_batch_size(self) -> int:
        return self._batch_size

    def get_batch(self, names):
        return None  # no images: a calibration that needs them stops here instead of guessing

    def read_calibration_cache(self):
        return self._cache

    def write_calibration_cache(self, data) -> None:
        """The bundle's cache stays as shipped (its manifest checks it)."""


def for_tensorrt_version(cache: bytes, version: str) -> bytes:
    """``cache`` with its header's version set to ``version`` (10.3.0 -> ``TRT-100300-...``): the
    scales do not depend on the version, and a cache written for another TensorRT is otherwise
    not read."""
    from edgekd.export.int8 import tensorrt_version_number

    header, sep, rest = cache.partition(b"\n")
    parts = header.decode("ascii", "replace").split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT":
        return cache
    return f"TRT-{tensorrt_version_number(version)}-{parts[2]}".encode() + sep + rest


def cache_calibrator(cache_path: Path):
    """A TensorRT calibrator that only reads ``cache_path`` (the bundle's ``calibration.cache``)."""
    import tensorrt as trt

    cache = for_tensorrt_version(Path(cache_path).read_bytes(), trt.__version__)
    base = getattr(trt, calibration_algorithm(cache, where=str(cache_path)))

    class CacheCalibrator(CacheReader, base):
        def __init__(self) -> None:
            base.__init__(self)
            CacheReader.__init__(self, cache)

    return CacheCalibrator()


def build_engine(onnx_path: Path, out_path: Path, *, precision: str, image_size: int,
                 min_batch: int = 1, opt_batch: int = 8, max_batch: int = 32, workspace_mb: int = 1024,
                 calibration_cache: Path | None = None, explicit_int8: bool = False,
                 dla_core: int | None = None) -> Path:
    """Serialise a TensorRT engine for ``onnx_path`` at ``precision`` (fp32, fp16 or int8).

    INT8 scales come from the Q/DQ nodes of ``onnx_path`` when ``explicit_int8`` (explicit
    quantization: no calibrator, the form TensorRT keeps; implicit calibration is deprecated since
    TensorRT 10.1), else from ``calibration_cache`` (read only, its header set to this TensorRT).
    ``dla_core`` puts the layers on that DLA core with GPU fallback (:func:`device_settings`).
    """
    import tensorrt as trt

    device = device_settings(precision, dla_core)
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
    for flag in precision_flags(precision) + device["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if device["device"] == "DLA":
        cores = int(builder.num_DLA_cores)
        if device["dla_core"] >= cores:
            raise EdgeKDError(f"--dla-core {device['dla_core']}: this device has {cores} DLA "
                              f"core{'s' if cores != 1 else ''}"
                              + (f" (0 to {cores - 1})" if cores else "; omit --dla-core"))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = device["dla_core"]
    if precision == "int8" and not explicit_int8:
        if calibration_cache is None:
            raise EdgeKDError(f"{onnx_path.name}: int8 needs its Q/DQ scales (model.int8.trt.onnx) or a "
                              f"calibration cache (calibration.cache)")
        config.int8_calibrator = cache_calibrator(calibration_cache)
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeKDError(f"export.tensorrt: TensorRT could not build a {precision} engine from "
                          f"{onnx_path.name} (see its log above)")
    from edgekd.files import write_atomic

    write_atomic(Path(out_path), bytes(serialized))
    return Path(out_path)


class DeviceBuffers:
    """Device memory for one input and one output, allocated once per input shape and reused.

    :meth:`get` returns the (input, output) device pointers for a call with that many bytes;
    the previous allocation is kept while the sizes stay the same (the timed loop of a bench
    calls with one shape over and over) and freed only when they change or on :meth:`free`.
    ``cudart`` is cuda-python's runtime module (a stand-in in the tests).
    """

    def __init__(self, cudart) -> None:
        self._cudart = cudart
        self.sizes: tuple[int, int] | None = None
        self.pointers: tuple[int, int] | None = None

    def get(self, in_nbytes: int, out_nbytes: int) -> tuple[int, int]:
        sizes = (int(in_nbytes), int(out_nbytes))
        if sizes != self.sizes:
            self.free()
            d_in = _check(self._cudart.cudaMalloc(sizes[0]))
            try:
                d_out = _check(self._cudart.cudaMalloc(sizes[1]))
            except RuntimeError:
                self._cudart.cudaFree(d_in)
                raise
            self.sizes, self.pointers = sizes, (d_in, d_out)
        return self.pointers

    def free(self) -> None:
        if self.pointers is not None:
            for pointer in self.pointers:
                self._cudart.cudaFree(pointer)
        self.sizes = self.pointers = None


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
        shapes = self.engine.get_tensor_profile_shape(self.input_name, 0)  # (min, opt, max)
        self.batch_range = (int(shapes[0][0]), int(shapes[2][0]))
        self.batch_size = self.batch_range[1]
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._buffers = DeviceBuffers(self._cudart)
        self._shape: tuple[int, ...] | None = None
        self._out: np.ndarray | None = None

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits of one batch; device buffers and tensor addresses are set up only when the input
        shape changes (:class:`DeviceBuffers`), so a timed loop measures copies and inference."""
        cudart = self._cudart
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self._shape:
            self.context.set_input_shape(self.input_name, tuple(x.shape))
            self._out = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), np.float32)
            d_in, d_out = self._buffers.get(x.nbytes, self._out.nbytes)
            self.context.set_tensor_address(self.input_name, int(d_in))
            self.context.set_tensor_address(self.output_name, int(d_out))
            self._shape = x.shape
        d_in, d_out = self._buffers.pointers
        out = self._out
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, to_device, self._stream))
        if not self.context.execute_async_v3(self._stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, to_host, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return out.copy()

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the object is collected)."""
        buffers = getattr(self, "_buffers", None)
        if buffers is not None:
            buffers.free()
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            self._cudart.cudaStreamDestroy(stream)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the CUDA context may be gone already
            pass

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
    # int8: explicit quantization from the TensorRT-form INT8 file the int8 row wrote just before
    source = ctx.out_dir / "model.int8.trt.onnx" if cfg.precision == "int8" else ctx.onnx_path
    path = build_engine(source, ctx.out_dir / f"model.{cfg.precision}.engine",
                        precision=cfg.precision, image_size=ctx.image_size, min_batch=cfg.min_batch,
                        opt_batch=cfg.opt_batch, max_batch=cfg.max_batch, workspace_mb=cfg.workspace_mb,
                        explicit_int8=cfg.precision == "int8")
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
