"""``edgekd bench``: time an artifact where it runs, per batch size, and optionally score it.

:func:`run_bench` checks every option first (one :class:`~edgekd.errors.EdgeKDError` line for a
bad one), picks the backend and the model file, then for each batch size times the first
inference, a warm-up and the timed calls in a few back-to-back repeats
(:func:`edgekd.bench.timing.time_batch`), with tegrastats sampling power during the timed calls
when asked. By default it times batch sizes 1 and 8 (those the model takes, for a model built
for one batch size or an engine profile without them). ``--backend trtexec`` hands the
timing to NVIDIA's trtexec instead. The result is a plain dict, schema ``edgekd.bench/v1``.

    result = run_bench("runs/quickstart/bundle", batch_sizes="1,8", iterations=200)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from edgekd import __version__
from edgekd.bench.backends import (
    BACKENDS,
    DEFAULT_TRT_CACHE,
    Backend,
    engine_without_tensorrt,
    gpu_providers,
    load_onnxruntime,
    tensorrt_available,
)
from edgekd.bench.device import describe_device, gpu_memory_used_mb, peak_rss_mb
from edgekd.bench.target import Target, resolve_target
from edgekd.bench.tegrastats import TegrastatsSampler, find_tegrastats, summarise_power
from edgekd.bench.timing import DEFAULT_REPEATS, random_batch, time_batch
from edgekd.bundle.eval_set import EVAL_SET, read_eval_set
from edgekd.bundle.manifest import read_manifest
from edgekd.card.io import load_card
from edgekd.errors import EdgeKDError
from edgekd.export.files import INT8_ONNX, INT8_TRT_ONNX
from edgekd.files import sha256_file
from edgekd.versions import library_versions

__all__ = [
    "BENCH_SCHEMA",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_ITERATIONS",
    "parse_batch_sizes",
    "default_batch_sizes",
    "check_options",
    "choose_backend",
    "run_bench",
    "bundle_info",
]

BENCH_SCHEMA = "edgekd.bench/v1"
DEFAULT_BATCH_SIZES = (1, 8)
DEFAULT_ITERATIONS = 200  # per batch size, split over the repeats (5 x 40 by default)
TRTEXEC_WARMUP_MS = 200


def parse_batch_sizes(text: str | Sequence[int]) -> list[int]:
    """``"1,8,32" -> [1, 8, 32]``: positive integers, duplicates dropped, order kept."""
    items = text.split(",") if isinstance(text, str) else list(text)
    sizes = []
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            value = 0
        if value < 1:
            raise EdgeKDError(
                f"--batch-sizes: {text!r} is not a comma-separated list of positive integers (e.g. 1,8,32)"
            )
        if value not in sizes:
            sizes.append(value)
    return sizes


def choose_backend(target: Target, backend: str) -> tuple[str, Path]:
    """The backend to run and the model file it runs, for ``--backend NAME`` on ``target``.

    ``auto``: a TensorRT engine when there is one and TensorRT imports, else the ONNX model
    (``model.onnx`` in a bundle) through onnxruntime, else a torch file through torch.
    """
    choices = ["auto", *BACKENDS]
    if backend not in choices:
        raise EdgeKDError(f"--backend: unknown backend {backend!r}; choose from: {', '.join(choices)}")
    what = target.given
    if backend == "auto":
        onnx, engines, torch_files = (_files(target, k) for k in ("onnx", "engine", "torch"))
        if engines and tensorrt_available():
            return "tensorrt", engines[0]
        if onnx:
            return "onnxruntime", onnx[0]
        if engines:
            raise engine_without_tensorrt(engines[0])
        if torch_files:
            return "torch", torch_files[0]
        raise EdgeKDError(f"{what}: no model file (.onnx, .engine, .pt) to bench")
    chosen = BACKENDS[backend]
    files = [f for kind in chosen.files for f in _files(target, kind)]
    if not files:
        raise EdgeKDError(f"{what}: --backend {backend} runs a {chosen.description}, and there is none here")
    if chosen.needs is not None and not chosen.needs():
        raise engine_without_tensorrt(files[0])
    return backend, files[0]


def _files(target: Target, kind: str) -> list[Path]:
    """The target's model files of one kind; the bundle's fp32 ``model.onnx`` first."""
    return sorted(target.files(kind), key=lambda p: p.name != "model.onnx")


def check_options(
    *,
    threads: int | None,
    warmup: int,
    iterations: int | None,
    duration: float | None,
    repeats: int,
    tegrastats_interval_ms: int = 100,
) -> int | None:
    """One line for the first bad number; the timed calls per batch size (the default when
    neither ``iterations`` nor ``duration`` is given)."""
    if repeats < 1:
        raise EdgeKDError(f"--repeats: {repeats}; must be a positive integer")
    if threads is not None and threads < 1:
        raise EdgeKDError(f"--threads: {threads}; must be a positive integer")
    if warmup < 0:
        raise EdgeKDError(f"--warmup: {warmup}; must be 0 or more calls")
    if iterations is not None and duration is not None:
        raise EdgeKDError("--iterations and --duration: give one of them, not both")
    if iterations is not None and iterations < 1:
        raise EdgeKDError(f"--iterations: {iterations}; must be a positive integer")
    if duration is not None and not duration > 0:
        raise EdgeKDError(f"--duration: {duration}; must be a positive number of seconds")
    if tegrastats_interval_ms < 1:
        raise EdgeKDError(
            f"--tegrastats-interval: {tegrastats_interval_ms}; must be a positive number of milliseconds"
        )
    return DEFAULT_ITERATIONS if iterations is None and duration is None else iterations


def _input_chw(target: Target, backend: Backend | None, model: Path) -> tuple[int, int, int]:
    if target.preprocess is not None:
        return tuple(target.preprocess["input_size"])
    if backend is not None and backend.input_chw is not None:
        return backend.input_chw
    raise EdgeKDError(
        f"{model}: input shape unknown; put a preprocess.json with input_size [C, H, W] "
        f"beside it, or bench the bundle directory"
    )


def bundle_info(target: Target) -> dict | None:
    """A result's ``bundle`` entry: the name and version in the bundle's manifest (both None when
    it cannot be read); None for a model file outside a bundle."""
    if target.bundle is None:
        return None
    try:
        manifest = read_manifest(target.bundle)
    except EdgeKDError:
        return {"name": None, "version": None}
    return {"name": manifest.get("name"), "version": manifest.get("version")}


def _card(target: Target) -> dict | None:
    """The bundle's card, or None when it has no (valid) one."""
    try:
        return load_card(target.bundle)
    except EdgeKDError:
        return None


def _build_top1(target: Target, file: str) -> float | None:
    """Top-1 the build measured for this artifact file, from the bundle's card, if recorded."""
    models = (_card(target) or {}).get("models")
    if not isinstance(models, dict):
        return None
    for entry in models.values():
        if isinstance(entry, dict) and entry.get("file") == file:
            return (entry.get("metrics") or {}).get("top1")
    return None


def default_batch_sizes(backend: Backend | None) -> list[int]:
    """:data:`DEFAULT_BATCH_SIZES`, less those ``backend`` cannot take (a model built for one batch
    size, an engine's profile); when it takes none of them, its own (the fixed batch, or the
    profile's smallest)."""
    sizes = list(DEFAULT_BATCH_SIZES)
    if backend is None:
        return sizes
    if backend.fixed_batch is not None:
        return [backend.fixed_batch]
    if backend.batch_range is not None:
        low, high = backend.batch_range
        return [b for b in sizes if low <= b <= high] or [low]
    return sizes


def _bench_in_process(
    backend: Backend,
    chw,
    sizes,
    *,
    warmup,
    iterations,
    duration,
    repeats,
    sampler_factory,
    progress,
    has_gpu,
    log,
) -> list[dict]:
    if backend.fixed_batch is not None and any(b != backend.fixed_batch for b in sizes):
        raise EdgeKDError(
            f"{backend.model}: built for batch size {backend.fixed_batch} only; use "
            f"--batch-sizes {backend.fixed_batch} (or export with a dynamic batch)"
        )
    if backend.batch_range is not None:
        low, high = backend.batch_range
        outside = [b for b in sizes if not low <= b <= high]
        if outside:
            raise EdgeKDError(
                f"{backend.model}: its profile takes batch sizes {low} to {high}, not "
                f"{', '.join(map(str, outside))}; choose --batch-sizes within it (or "
                f"build the engine with other --min-batch/--max-batch)"
            )
    results = []
    for b in sizes:
        x = random_batch(b, chw, backend.input_dtype)
        sampler = sampler_factory() if sampler_factory else None
        r = time_batch(
            backend.infer,
            x,
            warmup=warmup,
            iterations=iterations,
            duration=duration,
            repeats=repeats,
            progress=progress,
            desc=f"{backend.name} batch {b}",
            sampler=sampler,
        )
        r["peak_rss_mb"] = peak_rss_mb()
        r["gpu_memory_mb"] = gpu_memory_used_mb() if has_gpu else None
        r["power"] = (
            summarise_power(sampler.samples, images=b * r["iterations"], seconds=r["wall_s"])
            if sampler
            else None
        )
        lat = r["latency_ms"]
        log(
            f"batch {b}: p50 {lat['p50']:.3f} ms (p10-p90 {lat['p10']:.3f}-{lat['p90']:.3f}), "
            f"{r['throughput_ips']:.1f} images/s ({r['iterations']} calls in {r['repeats']} repeats)"
        )
        results.append(r)
    return results


def _bench_trtexec(
    model: Path, target: Target, sizes, *, iterations, duration, sampler_factory, log
) -> tuple[list[dict], dict, tuple[int, int, int]]:
    from edgekd.bench.trtexec import run_trtexec

    name, probe = None, None
    onnx = model if model.suffix == ".onnx" else (target.bundle or model.parent) / "model.onnx"
    if onnx.is_file():  # input name and shape from the ONNX (trtexec needs --shapes for a dynamic batch)
        probe = load_onnxruntime(onnx, providers=["CPUExecutionProvider"])
        name = probe.input_name if probe.fixed_batch is None else None
    chw = _input_chw(target, probe, model)
    results, version = [], None
    for b in sizes:
        sampler = sampler_factory() if sampler_factory else None
        with sampler if sampler is not None else nullcontext():
            out = run_trtexec(
                model,
                batch=b,
                input_name=name,
                chw=chw,
                warmup_ms=TRTEXEC_WARMUP_MS,
                iterations=iterations,
                duration_s=duration,
            )
        version = out["tensorrt_version"]
        calls = out["queries"]
        seconds = out["total_host_walltime_s"]
        power = None
        if sampler is not None:  # the samples cover the whole trtexec run (load and warm-up too)
            power = summarise_power(sampler.samples, images=b * (calls or 0), seconds=seconds or 0.0)
            power["window"] = "whole trtexec run"
        results.append(
            {
                "batch": b,
                "iterations": calls,
                "latency_ms": out["latency_ms"],
                "repeats": None,  # trtexec times in one run of its own
                "repeat_p50_ms": None,
                "throughput_ips": out["throughput_ips"],
                "first_inference_ms": None,
                "wall_s": seconds,
                "peak_rss_mb": peak_rss_mb(children=True),
                "gpu_memory_mb": None,
                "power": power,
                "trtexec": {
                    k: out[k]
                    for k in (
                        "enqueue_ms",
                        "h2d_ms",
                        "gpu_compute_ms",
                        "d2h_ms",
                        "throughput_qps",
                        "total_gpu_compute_s",
                        "command",
                    )
                },
            }
        )
        log(
            f"batch {b}: trtexec latency median {out['latency_ms'].get('p50')} ms, "
            f"{out['throughput_ips']} images/s"
        )
    return results, {"name": "trtexec", "version": version, "warmup_ms": TRTEXEC_WARMUP_MS}, chw


def run_bench(
    target: str | Path,
    *,
    backend: str = "auto",
    providers: str | Sequence[str] | None = None,
    batch_sizes: str | Sequence[int] | None = None,
    threads: int | None = None,
    warmup: int = 10,
    iterations: int | None = None,
    duration: float | None = None,
    repeats: int = DEFAULT_REPEATS,
    tegrastats: bool = False,
    tegrastats_interval_ms: int = 100,
    evaluate: bool = False,
    progress: bool = False,
    trt_cache: str | Path | None = DEFAULT_TRT_CACHE,
    reference=None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Bench a bundle or a model file; see the module docstring.

    Parameters
    ----------
    target : path
        A bundle directory, or a ``.onnx``, ``.engine`` (``.plan``) or ``.pt``/``.pt2`` file.
    backend : str
        ``auto``, ``onnxruntime``, ``tensorrt``, ``trtexec`` or ``torch``.
    providers : str or list of str, optional
        onnxruntime execution providers (default: best available of TensorRT, CUDA, CPU).
    batch_sizes : str or list of int, optional
        ``"1,8"`` or ``[1, 8]`` (default: 1 and 8, see :func:`default_batch_sizes`).
    threads : int, optional
        Intra-op threads (onnxruntime) or torch threads.
    warmup : int
        Untimed calls after the first inference (trtexec: a fixed 200 ms warm-up instead).
    iterations, duration : int or float, optional
        Timed calls per batch size, or seconds per batch size, split over the repeats; at most
        one (default: 200 iterations).
    repeats : int
        Back-to-back timed loops per batch size (default 5); each loop's median is kept
        (``repeat_p50_ms``) to show how far the median moves between loops.
    tegrastats : bool
        Sample power with tegrastats during the timed calls (Jetson only).
    tegrastats_interval_ms : int
        tegrastats sampling interval.
    evaluate : bool
        Also score the artifact on the bundle's eval_set.npz (top-1 and fairness metrics).
    progress : bool
        Show a tqdm progress line on stderr.
    trt_cache : path, optional
        Engine cache folder of onnxruntime's TensorRT provider (None: no cache); see
        :func:`edgekd.bench.backends.provider_options`.
    reference : int array, optional
        With ``evaluate``: ``model.onnx``'s predictions on the eval set
        (:func:`edgekd.bench.evaluate.reference_predictions`); adds the agreement with them.
    log : callable, optional
        Receives one line per finished batch size.

    Returns
    -------
    dict
        ``schema`` (``edgekd.bench/v1``), ``edgekd``, ``measured_at``, ``artifact`` (file, path,
        sha256, size_bytes), ``bundle`` (name, version, or None), ``backend``, ``runtime``,
        ``device``, ``versions``, ``settings``, ``session_s``, ``results`` (one per batch size:
        batch, iterations, latency_ms {mean, std, min, p10, p25, p50, p75, p90, p95, p99, max},
        repeats, repeat_p50_ms, throughput_ips, first_inference_ms, wall_s, peak_rss_mb,
        gpu_memory_mb, power, samples_ms) and ``eval``.
    """
    log = log or (lambda message: None)
    sizes = parse_batch_sizes(batch_sizes) if batch_sizes is not None else None
    iterations = check_options(
        threads=threads,
        warmup=warmup,
        iterations=iterations,
        duration=duration,
        repeats=repeats,
        tegrastats_interval_ms=tegrastats_interval_ms,
    )
    resolved = resolve_target(target)
    name, model = choose_backend(resolved, backend)
    if backend == "auto" and name == "onnxruntime" and resolved.files("engine"):
        log(
            f"auto: TensorRT cannot be imported here, so {model.name} runs through onnxruntime "
            f"instead of {resolved.files('engine')[0].name}"
        )
    if evaluate:
        if name == "trtexec":
            raise EdgeKDError("--eval: trtexec only times; evaluate with --backend tensorrt or onnxruntime")
        if resolved.bundle is None or resolved.preprocess is None:
            raise EdgeKDError(
                f"--eval: {resolved.given} is not in a bundle; --eval reads the "
                f"bundle's {EVAL_SET} and preprocess.json"
            )
        if not (resolved.bundle / EVAL_SET).is_file():
            raise EdgeKDError(
                f"--eval: {resolved.bundle} has no {EVAL_SET}; build with bundle.include_eval_set: true"
            )
        read_eval_set(resolved.bundle, resolved.preprocess)  # a bad set fails before any timing
    sampler_factory = None
    if tegrastats:
        executable = find_tegrastats()
        sampler_factory = partial(
            TegrastatsSampler, interval_ms=tegrastats_interval_ms, executable=executable
        )
    device = describe_device()
    evaluation = None
    if name == "trtexec":
        sizes = sizes or default_batch_sizes(None)
        results, runtime, chw = _bench_trtexec(
            model,
            resolved,
            sizes,
            iterations=iterations,
            duration=duration,
            sampler_factory=sampler_factory,
            log=log,
        )
        session_s = None
    else:
        loaded = BACKENDS[name].load(model, providers=providers, threads=threads, trt_cache=trt_cache)
        chw = _input_chw(resolved, loaded, model)
        sizes = sizes or default_batch_sizes(loaded)
        if model.name == INT8_TRT_ONNX and not gpu_providers(loaded.runtime.get("providers") or []):
            log(
                f"{model.name} is the TensorRT form (symmetric int8 Q/DQ meant for TensorRT); on "
                f"onnxruntime's CPU provider it is not the fast form ({INT8_ONNX} is)"
            )
        results = _bench_in_process(
            loaded,
            chw,
            sizes,
            warmup=warmup,
            iterations=iterations,
            duration=duration,
            repeats=repeats,
            sampler_factory=sampler_factory,
            progress=progress,
            has_gpu=bool(device["gpus"]),
            log=log,
        )
        runtime, session_s = loaded.runtime, loaded.session_s
        if evaluate:
            from edgekd.bench.evaluate import eval_predictions, evaluate_artifact, model_name, student_step

            batch = loaded.fixed_batch or max(sizes)
            predictions = eval_predictions(
                loaded.infer, resolved.bundle, resolved.preprocess, batch=batch, dtype=loaded.input_dtype
            )
            evaluation = evaluate_artifact(
                loaded.infer,
                resolved.bundle,
                resolved.preprocess,
                batch=batch,
                dtype=loaded.input_dtype,
                reference=reference,
                predictions=predictions,
            )
            card = _card(resolved)
            step = student_step(
                resolved.bundle,
                predictions,
                after=model_name(card, model.name),
                measured_on=device["id"],
                card=card,
                preprocess=resolved.preprocess,
            )
            if step is not None:  # the card's compression step, filed by add_bench_result
                evaluation["compression_step"] = step
            build_top1 = _build_top1(resolved, model.name)
            evaluation["build_top1"] = build_top1
            evaluation["top1_change_vs_build"] = (
                None if build_top1 is None or evaluation["top1"] is None else evaluation["top1"] - build_top1
            )
            log(f"eval: top-1 {evaluation['top1']:.4f} on {evaluation['n']} images")
    return {
        "schema": BENCH_SCHEMA,
        "edgekd": __version__,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "artifact": {
            "file": model.name,
            "path": str(model.resolve()),
            "sha256": sha256_file(model),
            "size_bytes": model.stat().st_size,
        },
        "bundle": bundle_info(resolved),
        "backend": name,
        "runtime": runtime,
        "device": device,
        "versions": library_versions(),
        "settings": {
            "batch_sizes": sizes,
            "warmup": warmup,
            "iterations": iterations,
            "duration_s": duration,
            "repeats": repeats if name != "trtexec" else None,
            "input_shape": list(chw),
            "input": "random standard normal (seed 0)",
            "tegrastats_interval_ms": tegrastats_interval_ms if tegrastats else None,
        },
        "session_s": session_s,
        "results": results,
        "eval": evaluation,
    }
