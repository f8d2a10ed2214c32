"""In-process inference backends a bench times: onnxruntime, a TensorRT engine, torch.

The backends are a table (:data:`BACKENDS`, name -> :class:`BenchBackend`): which of a
bundle's files each runs, and its loader. A loader returns a :class:`Backend`: an ``infer(x)``
callable on a float batch (N, C, H, W), what it runs on and how long creating its session took.
Heavy libraries are imported only by the loader that needs them: torch only for ``--backend
torch``, TensorRT only for an engine. onnxruntime's GPU providers get their options from
:func:`provider_options` (TensorRT's engine cache under ``--trt-cache``, fp16 for fp16 and int8
files; CUDA's device, cuDNN algorithm search and memory arena). ``trtexec`` runs out of process
(:mod:`edgekd.bench.trtexec`) and has no loader. The build evaluates its exported artifacts
through the same loaders (:func:`edgekd.bench.evaluate.logits_through`), so a card's numbers come
from the runtime that ships.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.registry import Registry

__all__ = [
    "BACKENDS",
    "BenchBackend",
    "PREFERRED_PROVIDERS",
    "Backend",
    "resolve_providers",
    "provider_options",
    "gpu_providers",
    "file_precision",
    "DEFAULT_TRT_CACHE",
    "load_onnxruntime",
    "load_tensorrt",
    "load_torch",
    "tensorrt_available",
    "engine_without_tensorrt",
]
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
DEFAULT_TRT_CACHE = Path("~/.cache/edgekd/ort-trt")


@dataclass
class Backend:
    """A loaded model ready to time.

    ``fixed_batch`` is the batch size the model was built for when it cannot take others.
    """

    name: str
    model: Path
    infer: Callable[[np.ndarray], np.ndarray]
    session_s: float
    runtime: dict = field(default_factory=dict)
    input_name: str | None = None
    input_dtype: type = np.float32
    fixed_batch: int | None = None
    input_chw: tuple[int, int, int] | None = None  # from the model itself, when static
    batch_range: tuple[int, int] | None = None  # the batch sizes an engine's profile accepts


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def resolve_providers(requested: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """onnxruntime execution providers to use, in order.

    ``requested`` is None for the best available of TensorRT, CUDA, CPU (in that order), or names:
    full (``CUDAExecutionProvider``) or short (``tensorrt``, ``cuda``, ``cpu``), as a list or a
    comma-separated string. Each must be available in the installed onnxruntime.
    """
    if requested is None:
        return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]
    names = [n.strip() for n in (requested.split(",") if isinstance(requested, str) else requested)]
    names = [n for n in names if n]
    if not names:
        raise EdgeKDError(f"--providers: empty; choose from: {', '.join(available)}")
    chosen = []
    for name in names:
        full = _ALIASES.get(name.lower(), name)
        if full not in available:
            raise EdgeKDError(
                f"--providers: {name!r} is not available in this onnxruntime "
                f"{_version('onnxruntime') or ''}; available: {', '.join(available)}"
            )
        chosen.append(full)
    return chosen


def gpu_providers(providers: Sequence[str]) -> list[str]:
    """Those of ``providers`` that run on an NVIDIA GPU (TensorRT's and CUDA's): where the files
    meant for TensorRT are what ships.

    >>> gpu_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CUDAExecutionProvider']
    """
    return [p for p in providers if p in PREFERRED_PROVIDERS[:2]]


def file_precision(name: str) -> str:
    """The precision an artifact file holds, from the bundle's naming: ``model.int8.onnx``,
    ``model.int8.trt.onnx`` -> int8; ``model.fp16.onnx``, ``model.fp16.dla0.engine`` -> fp16;
    anything else (``model.onnx``) -> fp32."""
    parts = name.split(".")[1:-1]
    return next((p for p in parts if p in ("int8", "fp16", "fp32")), "fp32")


def provider_options(
    providers: Sequence[str],
    *,
    model: Path | None = None,
    sha256: str | None = None,
    trt_cache: str | Path | None = DEFAULT_TRT_CACHE,
    device_id: int = 0,
    fp16: bool | None = None,
) -> list:
    """onnxruntime's ``providers`` argument: each provider with its options.

    - ``TensorrtExecutionProvider``: ``trt_fp16_enable`` for fp16 and int8 files (an fp32
      ``model.onnx`` stays fp32, as shipped, unless ``fp16=True``), ``trt_int8_enable`` for int8
      files (TensorRT takes the scales from their Q/DQ nodes); the engine and timing caches on
      (``trt_engine_cache_enable``, ``trt_timing_cache_enable``) under ``trt_cache/<sha256[:16]>-
      <precision>/``: onnxruntime does not notice a changed model in its cache, so each file
      gets its own folder by content; ``trt_cache=None`` turns caching off.
    - ``CUDAExecutionProvider``: ``device_id``, ``cudnn_conv_algo_search: EXHAUSTIVE`` (the
      fastest convolution, searched once per session), ``arena_extend_strategy: kSameAsRequested``
      (no power-of-two over-allocation: a Jetson's GPU shares the board's memory),
      ``do_copy_in_default_stream: True``.
    - others (CPU): no options.

    >>> provider_options(["CUDAExecutionProvider", "CPUExecutionProvider"])[1]
    'CPUExecutionProvider'
    """
    precision = file_precision(Path(model).name) if model is not None else "fp32"
    out: list = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            options = {
                "device_id": device_id,
                "trt_fp16_enable": bool(fp16) if fp16 is not None else precision != "fp32",
                "trt_int8_enable": precision == "int8",
            }
            if trt_cache is not None:
                folder = Path(trt_cache).expanduser() / f"{(sha256 or 'unknown')[:16]}-{precision}"
                options.update(
                    {
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(folder),
                        "trt_timing_cache_enable": True,
                        "trt_timing_cache_path": str(folder),
                    }
                )
            out.append((name, options))
        elif name == "CUDAExecutionProvider":
            out.append(
                (
                    name,
                    {
                        "device_id": device_id,
                        "cudnn_conv_algo_search": "EXHAUSTIVE",
                        "arena_extend_strategy": "kSameAsRequested",
                        "do_copy_in_default_stream": True,
                    },
                )
            )
        else:
            out.append(name)
    return out


def load_onnxruntime(
    path: Path,
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    trt_cache: str | Path | None = DEFAULT_TRT_CACHE,
) -> Backend:
    """An onnxruntime session over ``path`` (providers: :func:`resolve_providers`, their options:
    :func:`provider_options`)."""
    from edgekd.export.runtime import OnnxClassifier, import_onnxruntime
    from edgekd.files import sha256_file

    ort = import_onnxruntime()
    chosen = resolve_providers(providers, ort.get_available_providers())
    digest = sha256_file(path) if "TensorrtExecutionProvider" in chosen and Path(path).is_file() else None
    configured = provider_options(chosen, model=Path(path), sha256=digest, trt_cache=trt_cache)
    for entry in configured:
        if isinstance(entry, tuple) and "trt_engine_cache_path" in entry[1]:
            Path(entry[1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    clf = OnnxClassifier(path, providers=configured, threads=threads)
    session_s = time.perf_counter() - start
    meta = clf.session.get_inputs()[0]
    dims = list(meta.shape)
    static = [d for d in dims[1:] if isinstance(d, int)]
    return Backend(
        name="onnxruntime",
        model=Path(path),
        infer=clf.logits,
        session_s=session_s,
        runtime={
            "name": "onnxruntime",
            "version": ort.__version__,
            "providers": clf.session.get_providers(),
            "threads": threads,
            "provider_options": {e[0]: e[1] for e in configured if isinstance(e, tuple)} or None,
        },
        input_name=meta.name,
        input_dtype=_ORT_DTYPES.get(meta.type, np.float32),
        fixed_batch=dims[0] if isinstance(dims[0], int) else None,
        input_chw=tuple(dims[1:]) if len(dims) == 4 and len(static) == 3 else None,
    )


def tensorrt_available() -> bool:
    """True when TensorRT's Python bindings and edgekd's engine runner can be imported."""
    try:
        return (
            importlib.util.find_spec("tensorrt") is not None
            and importlib.util.find_spec("edgekd.export.tensorrt") is not None
        )
    except (ImportError, ValueError):
        return False


def engine_without_tensorrt(path: Path) -> EdgeKDError:
    """The one-line error for an engine on a machine where TensorRT cannot be imported."""
    return EdgeKDError(
        f"{path}: a TensorRT engine, but TensorRT's Python bindings cannot be imported "
        f"here; they come with JetPack on a Jetson; elsewhere bench model.onnx with "
        f"--backend onnxruntime"
    )


def load_tensorrt(path: Path, *, providers=None, threads: int | None = None, trt_cache=None) -> Backend:
    """A TensorRT engine through :class:`edgekd.export.tensorrt.TensorRTClassifier` (``providers``,
    ``threads`` and ``trt_cache`` do not apply)."""
    try:
        from edgekd.export.tensorrt import TensorRTClassifier
    except ImportError:
        raise engine_without_tensorrt(path) from None
    start = time.perf_counter()
    clf = TensorRTClassifier(path)
    session_s = time.perf_counter() - start
    low, high = clf.batch_range
    return Backend(
        name="tensorrt",
        model=Path(path),
        infer=clf.logits,
        session_s=session_s,
        runtime={"name": "tensorrt", "version": _version("tensorrt")},
        fixed_batch=high if low == high else None,
        batch_range=(low, high),
    )


def load_torch(path: Path, *, providers=None, threads: int | None = None, trt_cache=None) -> Backend:
    """A TorchScript (``.pt``, ``.ts``) or ``torch.export`` (``.pt2``, ``.ep``) model on the CPU
    (``providers`` and ``trt_cache`` do not apply)."""
    try:
        import torch
    except ImportError:
        raise EdgeKDError(
            "--backend torch: torch is not installed; install edgekd[train], or bench "
            "the ONNX with --backend onnxruntime"
        ) from None
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        if Path(path).suffix in (".pt2", ".ep"):
            model = torch.export.load(str(path)).module()
        else:
            model = torch.jit.load(str(path), map_location="cpu")
            model.eval()
    except Exception as err:  # torch raises many types for a file it cannot read
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EdgeKDError(
            f"{path}: torch cannot load it as TorchScript (.pt) or torch.export (.pt2) ({first})"
        ) from None
    session_s = time.perf_counter() - start

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return Backend(
        name="torch",
        model=Path(path),
        infer=infer,
        session_s=session_s,
        runtime={"name": "torch", "version": torch.__version__, "threads": torch.get_num_threads()},
    )


@dataclass(frozen=True)
class BenchBackend:
    """One row of the backend table.

    ``files`` are the kinds of model file it runs, in the order it prefers them (``onnx``,
    ``engine``, ``torch``: see :class:`edgekd.bench.target.Target`); ``load`` is ``None`` for a
    backend that times out of process (trtexec); ``needs`` says whether it can run here.
    """

    name: str
    files: tuple[str, ...]
    description: str
    load: Callable[..., Backend] | None
    needs: Callable[[], bool] | None = None


BACKENDS: Registry[BenchBackend] = Registry("bench backend")
for _backend in (
    BenchBackend("onnxruntime", ("onnx",), ".onnx model", load_onnxruntime),
    BenchBackend("tensorrt", ("engine",), "TensorRT .engine", load_tensorrt, tensorrt_available),
    BenchBackend("trtexec", ("engine", "onnx"), ".engine or .onnx model", None),
    BenchBackend("torch", ("torch",), "TorchScript .pt or torch.export .pt2 file", load_torch),
):
    BACKENDS.add(_backend.name, _backend)
