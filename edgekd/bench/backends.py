"""In-process inference backends a bench times: onnxruntime, a TensorRT engine, torch.

The backends are a table (:data:`BACKENDS`, name -> :class:`BenchBackend`): which of a
bundle's files each runs, and its loader. A loader returns a :class:`Backend`: an ``infer(x)``
callable on a float batch (N, C, H, W), what it runs on and how long creating its session took.
Heavy libraries are imported only by the loader that needs them: torch only for ``--backend
torch``, TensorRT only for an engine. ``trtexec`` runs out of process (:mod:`edgekd.bench.trtexec`)
and has no loader. The build evaluates its exported artifacts through the same loaders
(:func:`edgekd.export.formats.evaluate_file`), so a card's numbers come from the runtime that ships.
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

__all__ = ["BACKENDS", "BenchBackend", "PREFERRED_PROVIDERS", "Backend", "resolve_providers",
           "load_onnxruntime", "load_tensorrt", "load_torch", "tensorrt_available", "engine_without_tensorrt"]
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
            "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


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
            raise EdgeKDError(f"--providers: {name!r} is not available in this onnxruntime "
                              f"{_version('onnxruntime') or ''}; available: {', '.join(available)}")
        chosen.append(full)
    return chosen


def load_onnxruntime(path: Path, *, providers: str | Sequence[str] | None = None,
                     threads: int | None = None) -> Backend:
    """An onnxruntime session over ``path`` (see :func:`resolve_providers`)."""
    from edgekd.export.runtime import OnnxClassifier, import_onnxruntime

    ort = import_onnxruntime()
    chosen = resolve_providers(providers, ort.get_available_providers())
    start = time.perf_counter()
    clf = OnnxClassifier(path, providers=chosen, threads=threads)
    session_s = time.perf_counter() - start
    meta = clf.session.get_inputs()[0]
    dims = list(meta.shape)
    static = [d for d in dims[1:] if isinstance(d, int)]
    return Backend(
        name="onnxruntime", model=Path(path), infer=clf.logits, session_s=session_s,
        runtime={"name": "onnxruntime", "version": ort.__version__,
                 "providers": clf.session.get_providers(), "threads": threads},
        input_name=meta.name, input_dtype=_ORT_DTYPES.get(meta.type, np.float32),
        fixed_batch=dims[0] if isinstance(dims[0], int) else None,
        input_chw=tuple(dims[1:]) if len(dims) == 4 and len(static) == 3 else None,
    )


def tensorrt_available() -> bool:
    """True when TensorRT's Python bindings and edgekd's engine runner can be imported."""
    try:
        return (importlib.util.find_spec("tensorrt") is not None
                and importlib.util.find_spec("edgekd.export.tensorrt") is not None)
    except (ImportError, ValueError):
        return False


def engine_without_tensorrt(path: Path) -> EdgeKDError:
    """The one-line error for an engine on a machine where TensorRT cannot be imported."""
    return EdgeKDError(f"{path}: a TensorRT engine, but TensorRT's Python bindings cannot be imported "
                       f"here; they come with JetPack on a Jetson; elsewhere bench model.onnx with "
                       f"--backend onnxruntime")


def load_tensorrt(path: Path, *, providers=None, threads: int | None = None) -> Backend:
    """A TensorRT engine through :class:`edgekd.export.tensorrt.TensorRTClassifier` (``providers``
    and ``threads`` do not apply)."""
    try:
        from edgekd.export.tensorrt import TensorRTClassifier
    except ImportError:
        raise engine_without_tensorrt(path) from None
    start = time.perf_counter()
    clf = TensorRTClassifier(path)
    session_s = time.perf_counter() - start
    fixed = getattr(clf, "batch_size", None)
    return Backend(name="tensorrt", model=Path(path), infer=clf.logits, session_s=session_s,
                   runtime={"name": "tensorrt", "version": _version("tensorrt")},
                   fixed_batch=fixed if isinstance(fixed, int) else None)


def load_torch(path: Path, *, providers=None, threads: int | None = None) -> Backend:
    """A TorchScript (``.pt``, ``.ts``) or ``torch.export`` (``.pt2``, ``.ep``) model on the CPU
    (``providers`` does not apply)."""
    try:
        import torch
    except ImportError:
        raise EdgeKDError("--backend torch: torch is not installed; install edgekd[train], or bench "
                          "the ONNX with --backend onnxruntime") from None
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
        raise EdgeKDError(f"{path}: torch cannot load it as TorchScript (.pt) or torch.export "
                          f"(.pt2) ({first})") from None
    session_s = time.perf_counter() - start

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return Backend(name="torch", model=Path(path), infer=infer, session_s=session_s,
                   runtime={"name": "torch", "version": torch.__version__,
                            "threads": torch.get_num_threads()})


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


BACKENDS: dict[str, BenchBackend] = {b.name: b for b in (
    BenchBackend("onnxruntime", ("onnx",), ".onnx model", load_onnxruntime),
    BenchBackend("tensorrt", ("engine",), "TensorRT .engine", load_tensorrt, tensorrt_available),
    BenchBackend("trtexec", ("engine", "onnx"), ".engine or .onnx model", None),
    BenchBackend("torch", ("torch",), "TorchScript .pt or torch.export .pt2 file", load_torch),
)}
