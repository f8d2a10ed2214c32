"""TensorRT engines: built from the ONNX file with the TensorRT Python API, run without torch.

Building (``build_engine``), one function for TensorRT 8.5/8.6, 10.x, 11.x and TensorRT-RTX
(:class:`TensorRTApi` holds the differences):

1. ``trt.Builder`` -> network (explicit batch: a flag on 8.x only; strongly typed on 11.x and
   TensorRT-RTX) -> ``trt.OnnxParser`` reads the file :func:`engine_source` picks;
2. builder config: workspace limit (``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``);
   on 8.x/10.x ``BuilderFlag.FP16`` / ``BuilderFlag.INT8``, INT8 scales from the Q/DQ nodes of
   the explicitly quantized ``model.int8.trt.onnx`` (no calibrator: the build machine and, by
   default, ``edgekd engine``), or from the bundle's ``calibration.cache`` read by a calibrator
   that never sees an image (:func:`cache_calibrator`; implicit quantization, deprecated since
   TensorRT 10.1, removed in 11, for engines built from ``model.onnx``); on 11.x no precision
   flags: fp16 from ``model.fp16.onnx``, INT8 from ``model.int8.trt.onnx``;
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

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from edgekd.config import Section
from edgekd.errors import EdgeKDError
from edgekd.export.artifact import Artifact, ExportContext
from edgekd.export.calibration_cache import calibration_algorithm, for_tensorrt_version
from edgekd.export.files import CALIBRATION_CACHE, FP16_ONNX, INT8_TRT_ONNX, MODEL_ONNX, engine_file_name
from edgekd.export.runtime import batched_logits
from edgekd.export.targets import tensorrt_line

PRECISIONS = ("fp16", "int8", "fp32")

__all__ = [
    "TensorRTConfig",
    "build_tensorrt_artifact",
    "tensorrt_status",
    "engine_info",
    "build_engine",
    "TensorRTClassifier",
    "DeviceBuffers",
    "profile_shapes",
    "precision_flags",
    "device_settings",
    "CacheReader",
    "cache_calibrator",
    "TensorRTApi",
    "tensorrt_api",
    "engine_source",
    "PRECISIONS",
]


class TensorRTConfig(Section):
    """``export.tensorrt``: an engine for the GPU of the build machine (see edgekd.export.tensorrt)."""

    enabled: bool = False
    required: bool = Field(False, description="fail the build when TensorRT or a GPU is missing")
    via: Literal["onnx", "torch_tensorrt"] = Field(
        "onnx", description="build from model.onnx, or through Torch-TensorRT"
    )
    precision: Literal["fp32", "fp16", "int8"] = Field("fp16", description="the engine's precision")
    workspace_mb: int = Field(1024, ge=16, description="builder workspace limit")
    min_batch: int = Field(1, ge=1, description="smallest batch of the optimisation profile")
    opt_batch: int = Field(8, ge=1, description="batch the engine is tuned for")
    max_batch: int = Field(32, ge=1, description="largest batch of the optimisation profile")

    @model_validator(mode="after")
    def _batch_order(self) -> TensorRTConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"needs min_batch <= opt_batch <= max_batch, got {self.min_batch}, "
                f"{self.opt_batch}, {self.max_batch}"
            )
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
        return (
            "TensorRT is not installed (the tensorrt Python package; on a Jetson it comes "
            "with JetPack): no engine built"
        )
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
    return {
        "tensorrt": trt.__version__,
        "cuda": f"{version // 1000}.{version % 1000 // 10}",
        "gpu": name.strip("\x00 "),
    }


def profile_shapes(
    image_size: int, min_batch: int, opt_batch: int, max_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The optimisation profile's (min, opt, max) input shapes, NCHW."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise EdgeKDError(
            f"export.tensorrt: batches must satisfy 1 <= min_batch <= opt_batch <= "
            f"max_batch, got {min_batch}, {opt_batch}, {max_batch}"
        )
    shape = (3, image_size, image_size)
    return (min_batch, *shape), (opt_batch, *shape), (max_batch, *shape)


def precision_flags(precision: str) -> list[str]:
    """The ``trt.BuilderFlag`` names a precision needs. INT8 also allows FP16, so layers that
    INT8 cannot run fall back to FP16 rather than FP32."""
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}
    if precision not in flags:
        raise EdgeKDError(
            f"export.tensorrt.precision: unknown precision {precision!r}; choose one of: {', '.join(flags)}"
        )
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
        raise EdgeKDError(
            f"--dla-core: {dla_core!r}; must be a DLA core number (0 or 1 on Jetson AGX/NX Orin)"
        )
    if precision not in ("fp16", "int8"):
        raise EdgeKDError(
            f"--dla-core {dla_core} with --precision {precision}: DLA runs fp16 or int8 "
            f"only; choose --precision fp16 or int8"
        )
    return {"device": "DLA", "dla_core": dla_core, "flags": ["GPU_FALLBACK"]}


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


def cache_calibrator(cache_path: Path, *, trt=None):
    """A TensorRT calibrator that only reads ``cache_path`` (the bundle's ``calibration.cache``)."""
    if trt is None:
        import tensorrt as trt

    cache = for_tensorrt_version(Path(cache_path).read_bytes(), trt.__version__)
    base = getattr(trt, calibration_algorithm(cache, where=str(cache_path)))

    class CacheCalibrator(CacheReader, base):
        def __init__(self) -> None:
            base.__init__(self)
            CacheReader.__init__(self, cache)

    return CacheCalibrator()


@dataclass(frozen=True)
class TensorRTApi:
    """How one TensorRT Python module builds: its version, the rules line of its parser
    (:mod:`edgekd.export.tensorrt_rules`), and the API differences between lines.

    ============  ==================  ===========================  ====================  ==========
    line          network flags       precision                    INT8 calibrator       target CC
    ============  ==================  ===========================  ====================  ==========
    8.5, 8.6      EXPLICIT_BATCH      BuilderFlag.FP16 / INT8      yes                   the GPU's
    10            none (explicit)     BuilderFlag.FP16 / INT8      deprecated (10.1)     the GPU's
    11            STRONGLY_TYPED      the file's types: fp16 from  removed               the GPU's
                  (always on)         model.fp16.onnx, int8 from
                                      Q/DQ (no precision flags)
    TensorRT-RTX  STRONGLY_TYPED      as 11                        none                  chosen
    ============  ==================  ===========================  ====================  ==========
    """

    module: object
    version: str
    line: str
    rtx: bool

    @property
    def name(self) -> str:
        return f"TensorRT-RTX {self.version}" if self.rtx else f"TensorRT {self.version}"

    @property
    def strongly_typed(self) -> bool:
        return self.line == "11"

    @property
    def has_calibrator(self) -> bool:
        return not self.strongly_typed and hasattr(self.module, "IInt8EntropyCalibrator2")

    def network_flags(self) -> int:
        flags = self.module.NetworkDefinitionCreationFlag
        if self.line in ("8.5", "8.6"):
            return 1 << int(flags.EXPLICIT_BATCH)
        if self.strongly_typed and hasattr(flags, "STRONGLY_TYPED"):
            return 1 << int(flags.STRONGLY_TYPED)  # ignored by 11 (always on), needed by RTX
        return 0


def tensorrt_api(trt=None) -> TensorRTApi:
    """The :class:`TensorRTApi` of ``trt`` (default: ``import tensorrt``); TensorRT-RTX's
    module (``tensorrt_rtx``) builds as TensorRT 11 does."""
    if trt is None:
        import tensorrt as trt
    version = str(trt.__version__)
    rtx = getattr(trt, "__name__", "").startswith("tensorrt_rtx")
    return TensorRTApi(module=trt, version=version, line="11" if rtx else tensorrt_line(version), rtx=rtx)


def engine_source(
    precision: str, files: Mapping[str, Path | None], *, strongly_typed: bool, calibrator: bool = True
) -> tuple[str, str | None, str | None]:
    """The ONNX file an engine of ``precision`` is built from, where its INT8 scales come from,
    and the calibration cache it reads: ``(file, int8_scales, cache)``, file names of ``files``
    (name -> path, ``None`` or missing where absent).

    ==========  =================================  ==============================================
    precision   weakly typed (8.x, 10.x)           strongly typed (11.x, TensorRT-RTX)
    ==========  =================================  ==============================================
    fp32        model.onnx                         model.onnx
    fp16        model.onnx + BuilderFlag.FP16      model.fp16.onnx (the network's types)
    int8        model.int8.trt.onnx (its Q/DQ), or model.int8.trt.onnx only (no calibrator)
                model.onnx + calibration.cache
    ==========  =================================  ==============================================
    """

    def has(name: str) -> bool:
        return files.get(name) is not None

    if precision not in PRECISIONS:
        raise EdgeKDError(f"--precision: {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if not has(MODEL_ONNX):
        raise EdgeKDError(f"has no {MODEL_ONNX} to build an engine from")
    if precision == "fp32":
        return MODEL_ONNX, None, None
    if precision == "fp16":
        if not strongly_typed:
            return MODEL_ONNX, None, None
        if has(FP16_ONNX):
            return FP16_ONNX, None, None
        raise EdgeKDError(
            f"--precision fp16: this TensorRT builds strongly typed networks, fp16 "
            f"from an fp16-typed file, and there is no {FP16_ONNX}; build with "
            f"export.fp16.enabled: true, or choose --precision fp32 or int8"
        )
    if has(INT8_TRT_ONNX):
        return INT8_TRT_ONNX, f"Q/DQ nodes of {INT8_TRT_ONNX}", None
    if strongly_typed or not calibrator:
        raise EdgeKDError(
            f"--precision int8: this TensorRT takes INT8 only from Q/DQ nodes, and there "
            f"is no {INT8_TRT_ONNX}; build with export.int8 for TensorRT, or choose "
            f"--precision fp16"
        )
    if has(CALIBRATION_CACHE):
        return MODEL_ONNX, f"calibration cache {CALIBRATION_CACHE}", CALIBRATION_CACHE
    raise EdgeKDError(
        f"--precision int8: there is neither {INT8_TRT_ONNX} nor {CALIBRATION_CACHE}; "
        f"build with export.int8 for TensorRT, or choose --precision fp16"
    )


def _collecting_logger(trt):
    """A ``trt.ILogger`` that keeps warnings and errors instead of printing them (TensorRT-RTX on
    a machine without a GPU logs a CUDA driver error it then works around)."""

    class Collecting(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity, message) -> None:
            if severity <= trt.ILogger.Severity.WARNING:
                self.messages.append(str(message))

    return Collecting()


def build_engine(
    onnx_path: Path,
    out_path: Path,
    *,
    precision: str,
    image_size: int,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_mb: int = 1024,
    calibration_cache: Path | None = None,
    explicit_int8: bool = False,
    dla_core: int | None = None,
    trt=None,
    compute_capability: str | None = None,
    quiet: bool = False,
) -> Path:
    """Serialise a TensorRT engine for ``onnx_path`` at ``precision`` (fp32, fp16 or int8).

    One builder for every TensorRT line (:class:`TensorRTApi`): on 8.x and 10.x the precision is
    a builder flag and INT8 scales come from the Q/DQ nodes of ``onnx_path`` when
    ``explicit_int8``, else from ``calibration_cache`` (read only, its header set to this
    TensorRT); on 11.x and TensorRT-RTX the network is strongly typed, so the file's types are the
    precision (:func:`engine_source` picks the file) and there is no calibrator. ``dla_core`` puts
    the layers on that DLA core with GPU fallback (:func:`device_settings`). ``trt`` is the
    TensorRT module (default ``tensorrt``; ``tensorrt_rtx`` for the build machine's proxy
    check), ``compute_capability`` (``"SM86"``) the GPU to build for where the module lets
    one choose (TensorRT-RTX), and ``quiet`` keeps TensorRT's log out of the output.
    """
    api = tensorrt_api(trt)
    trt = api.module
    device = device_settings(precision, dla_core)
    logger = _collecting_logger(trt) if quiet else trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(api.network_flags())
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeKDError(f"{api.name} cannot parse {Path(onnx_path).name}: {' '.join(errors.split())[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if compute_capability is not None:
        config.num_compute_capabilities = 1
        config.set_compute_capability(getattr(trt.ComputeCapability, compute_capability), 0)
    input_name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *profile_shapes(image_size, min_batch, opt_batch, max_batch))
    config.add_optimization_profile(profile)
    flags = [] if api.strongly_typed else precision_flags(precision)
    for flag in flags + device["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if device["device"] == "DLA":
        cores = int(builder.num_DLA_cores)
        if device["dla_core"] >= cores:
            raise EdgeKDError(
                f"--dla-core {device['dla_core']}: this device has {cores} DLA "
                f"core{'s' if cores != 1 else ''}"
                + (f" (0 to {cores - 1})" if cores else "; omit --dla-core")
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = device["dla_core"]
    if precision == "int8" and not explicit_int8:
        if not api.has_calibrator:
            raise EdgeKDError(
                f"{api.name} has no INT8 calibrator: build int8 from the Q/DQ file ({INT8_TRT_ONNX})"
            )
        if calibration_cache is None:
            raise EdgeKDError(
                f"{Path(onnx_path).name}: int8 needs its Q/DQ scales ({INT8_TRT_ONNX}) "
                f"or a calibration cache ({CALIBRATION_CACHE})"
            )
        config.int8_calibrator = cache_calibrator(calibration_cache, trt=trt)
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "; ".join(getattr(logger, "messages", [])[-2:])
        raise EdgeKDError(
            f"{api.name} could not build a {precision} engine from "
            f"{Path(onnx_path).name}"
            + (f": {' '.join(detail.split())[:300]}" if detail else " (see its log above)")
        )
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
            raise EdgeKDError(
                f"{path}: TensorRT cannot load this engine (built with another "
                "TensorRT version or for another GPU?)"
            )
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
            raise EdgeKDError(
                "export.tensorrt.via: torch_tensorrt needs Torch-TensorRT; install it "
                'with: pip install "edgekd[tensorrt]"'
            ) from None
    status = tensorrt_status()
    name = f"tensorrt_{cfg.precision}"
    if status is not None:
        if cfg.required:
            raise EdgeKDError(f"export.tensorrt (required): {status}")
        ctx.log(f"export: TensorRT skipped: {status}")
        return Artifact(name=name, skipped=status)
    if cfg.via == "torch_tensorrt":
        return _torch_tensorrt(cfg, ctx)
    api = tensorrt_api()
    files = {
        MODEL_ONNX: ctx.onnx_path,
        **{file: ctx.out_dir / file for file in (FP16_ONNX, INT8_TRT_ONNX) if (ctx.out_dir / file).is_file()},
    }
    source, _, _ = engine_source(
        cfg.precision, files, strongly_typed=api.strongly_typed, calibrator=False
    )  # at build time: INT8 from the Q/DQ file
    path = build_engine(
        files[source],
        ctx.out_dir / engine_file_name(cfg.precision),
        precision=cfg.precision,
        image_size=ctx.image_size,
        min_batch=cfg.min_batch,
        opt_batch=cfg.opt_batch,
        max_batch=cfg.max_batch,
        workspace_mb=cfg.workspace_mb,
        explicit_int8=source == INT8_TRT_ONNX,
    )
    info = engine_info()
    ctx.log(f"export: {path.name} (TensorRT {info['tensorrt']}, {info['gpu']})")
    return Artifact(
        name=name,
        file=path.name,
        path=path,
        kind="tensorrt",
        precision=cfg.precision,
        runtime=f"TensorRT {info['tensorrt']} on {info['gpu']}",
        backend="tensorrt",
        export={**info, "batch": [cfg.min_batch, cfg.opt_batch, cfg.max_batch]},
        engine=info,
    )


def _torch_tensorrt(cfg: TensorRTConfig, ctx: ExportContext) -> Artifact:
    """Torch-TensorRT's dynamo frontend; saved as an ExportedProgram that loads with
    ``torch.export.load`` (no edgekd or timm code needed)."""
    import torch
    import torch_tensorrt

    precisions = {
        "fp32": {torch.float32},
        "fp16": {torch.float16, torch.float32},
        "int8": {torch.int8, torch.float16, torch.float32},
    }
    shape = (3, ctx.image_size, ctx.image_size)
    model = ctx.student.eval().cuda()
    compiled = torch_tensorrt.compile(
        model,
        ir="dynamo",
        inputs=[
            torch_tensorrt.Input(
                min_shape=(cfg.min_batch, *shape),
                opt_shape=(cfg.opt_batch, *shape),
                max_shape=(cfg.max_batch, *shape),
                dtype=torch.float32,
            )
        ],
        enabled_precisions=precisions[cfg.precision],
        workspace_size=cfg.workspace_mb << 20,
    )
    path = ctx.out_dir / f"model.{cfg.precision}.ep"
    example = torch.zeros((cfg.opt_batch, *shape), device="cuda")
    torch_tensorrt.save(compiled, str(path), output_format="exported_program", inputs=[example])

    def infer(x: np.ndarray) -> np.ndarray:  # at most max_batch images per call
        with torch.no_grad():
            return np.concatenate(
                [
                    compiled(torch.from_numpy(x[i : i + cfg.max_batch]).cuda()).float().cpu().numpy()
                    for i in range(0, len(x), cfg.max_batch)
                ]
            )

    ctx.log(f"export: {path.name} (Torch-TensorRT {torch_tensorrt.__version__})")
    return Artifact(
        name=f"torch_tensorrt_{cfg.precision}",
        file=path.name,
        path=path,
        kind="torch_tensorrt",
        precision=cfg.precision,
        runtime=f"Torch-TensorRT {torch_tensorrt.__version__}",
        backend="torch",
        export={"via": "torch_tensorrt"},
        infer=infer,
    )
