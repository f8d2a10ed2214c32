"""``edgekd bench BUNDLE --all``: every artifact of a bundle, each through the backend that runs it,
in one table.

:func:`bundle_artifacts` lists the bundle's model files (``model.onnx`` first, then the other
ONNX files, engines, torch programs) with the backend of the backend table that runs each kind
(:data:`edgekd.bench.backends.BACKENDS`), or why it cannot run here (an engine without
TensorRT). The TensorRT form of the INT8 model (``model.int8.trt.onnx``: symmetric int8 Q/DQ,
which TensorRT fuses into int8 kernels) is labelled as such and timed only where onnxruntime
has TensorRT's or CUDA's provider, or when asked (``include_trt_form``): on a CPU-only
onnxruntime it runs as float arithmetic between quantize/dequantize pairs, several times slower
than ``model.int8.onnx``, the file made for that runtime. :func:`run_bench_all` benches each
with :func:`edgekd.bench.runner.run_bench` (same batch sizes, warm-up, iterations and repeats;
the process's peak RSS is reset between artifacts where Linux allows it) and, with
``evaluate``, scores each on ``eval_set.npz`` and compares its predictions with ``model.onnx``
through onnxruntime's CPU provider. :func:`all_rows` makes the table: one row per artifact and
batch size, and one per skipped artifact.

    result = run_bench_all("runs/tiny/bundle", evaluate=True)  # batch sizes 1 and 8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from edgekd import __version__
from edgekd.bench.backends import (
    BACKENDS,
    DEFAULT_TRT_CACHE,
    engine_without_tensorrt,
    file_precision,
    gpu_providers,
    resolve_providers,
)
from edgekd.bench.card_update import BENCH_ALL_SCHEMA
from edgekd.bench.target import MODEL_KINDS, Target, resolve_target
from edgekd.bench.timing import DEFAULT_REPEATS
from edgekd.card.bench import latency_cells
from edgekd.errors import EdgeKDError
from edgekd.export.files import INT8_ONNX, INT8_TRT_ONNX
from edgekd.fairness.metric_table import METRICS

__all__ = [
    "bundle_artifacts",
    "run_bench_all",
    "all_rows",
    "all_headers",
    "describe_all",
    "worst_cell_text",
    "artifact_format",
    "file_format",
    "TRT_FORM_SKIPPED",
]

TRT_FORM_SKIPPED = (
    f"the TensorRT form (symmetric int8 Q/DQ for TensorRT), not timed on a CPU-only "
    f"onnxruntime, where {INT8_ONNX} is the int8 file; --include-trt-form times it"
)
"""Why ``model.int8.trt.onnx`` is skipped where onnxruntime has no TensorRT or CUDA provider."""

_KIND_ORDER = ("onnx", "engine", "torch")


def _backend_for(kind: str) -> str | None:
    """The first in-process backend of the table that runs files of ``kind``."""
    return next((b.name for b in BACKENDS.values() if b.load is not None and kind in b.files), None)


def _onnxruntime_on_gpu(providers: str | Sequence[str] | None) -> bool:
    """Whether the onnxruntime providers a bench would use include TensorRT's or CUDA's."""
    from edgekd.export.runtime import import_onnxruntime

    try:
        available = import_onnxruntime().get_available_providers()
    except EdgeKDError:  # no onnxruntime: every ONNX file fails with its own line later
        return False
    return bool(gpu_providers(resolve_providers(providers, available)))


def bundle_artifacts(
    target: Target, *, include_trt_form: bool = False, providers: str | Sequence[str] | None = None
) -> list[dict]:
    """The bundle's model files in table order, each ``{"file", "path", "backend", "skipped"}``:
    ``skipped`` is None or the one-line reason it is not benched here (it cannot run, or it is
    the TensorRT form on a CPU-only onnxruntime and ``include_trt_form`` is off)."""
    if target.bundle is None or target.model is not None:
        raise EdgeKDError(
            f"--all: {target.given} is not a bundle directory; --all benches every artifact of a bundle"
        )
    files = [p for p in target.bundle.iterdir() if p.is_file() and p.suffix in MODEL_KINDS]
    files.sort(key=lambda p: (_KIND_ORDER.index(MODEL_KINDS[p.suffix]), p.name != "model.onnx", p.name))
    out = []
    on_gpu = None
    for path in files:
        backend = _backend_for(MODEL_KINDS[path.suffix])
        needs = BACKENDS[backend].needs if backend else None
        skipped = None
        if backend is None:
            skipped = f"no in-process backend runs {path.suffix} files"
        elif needs is not None and not needs():
            skipped = str(engine_without_tensorrt(path)).split(": ", 1)[1]
        elif path.name == INT8_TRT_ONNX and backend == "onnxruntime" and not include_trt_form:
            on_gpu = _onnxruntime_on_gpu(providers) if on_gpu is None else on_gpu
            skipped = None if on_gpu else TRT_FORM_SKIPPED
        out.append({"file": path.name, "path": path, "backend": backend, "skipped": skipped})
    return out


def run_bench_all(
    target: str | Path,
    *,
    batch_sizes: str | Sequence[int] | None = None,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    warmup: int = 10,
    iterations: int | None = None,
    duration: float | None = None,
    repeats: int = DEFAULT_REPEATS,
    evaluate: bool = False,
    include_trt_form: bool = False,
    trt_cache: str | Path | None = DEFAULT_TRT_CACHE,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Bench every artifact of the bundle ``target``; see the module docstring.

    The options are :func:`edgekd.bench.runner.run_bench`'s, applied to every artifact;
    ``include_trt_form`` also times ``model.int8.trt.onnx`` on a CPU-only onnxruntime.

    Returns
    -------
    dict
        ``schema`` (``edgekd.bench-all/v1``), ``edgekd``, ``measured_at``, ``bundle``, ``device``,
        ``reference`` (what agreement is measured against, or None), ``results`` (one
        ``edgekd.bench/v1`` result per artifact benched) and ``skipped`` (``{file, backend,
        reason, format, size_bytes}`` per artifact not benched here).
    """
    from edgekd.bench.device import describe_device, reset_peak_rss
    from edgekd.bench.runner import bundle_info, check_options, parse_batch_sizes, run_bench

    log = log or (lambda message: None)
    if batch_sizes is not None:
        parse_batch_sizes(batch_sizes)  # a bad option is one line before any artifact is timed
    check_options(threads=threads, warmup=warmup, iterations=iterations, duration=duration, repeats=repeats)
    resolved = resolve_target(target)
    artifacts = bundle_artifacts(resolved, include_trt_form=include_trt_form, providers=providers)
    reference, reference_info = None, None
    if evaluate and (resolved.bundle / "model.onnx").is_file():
        from edgekd.bench.evaluate import REFERENCE_FILE, reference_predictions
        from edgekd.bundle.eval_set import EVAL_SET

        if not (resolved.bundle / EVAL_SET).is_file():
            raise EdgeKDError(
                f"--eval: {resolved.bundle} has no {EVAL_SET}; build with bundle.include_eval_set: true"
            )
        reference = reference_predictions(resolved.bundle, resolved.preprocess, threads=threads)
        onnx_entry = next((e for e in _card_models(resolved).values() if e.get("file") == REFERENCE_FILE), {})
        reference_info = {
            "file": REFERENCE_FILE,
            "runtime": "onnxruntime (CPUExecutionProvider)",
            "images": int(len(reference)),
            "vs_student_at_build": (onnx_entry.get("vs_student") or {}).get("prediction_agreement"),
        }
    results, skipped, resets = [], [], []
    for artifact in artifacts:
        if artifact["skipped"]:
            skipped.append(_skipped(artifact, artifact["skipped"]))
            log(f"{artifact['file']}: skipped: {artifact['skipped']}")
            continue
        resets.append(reset_peak_rss())
        log(f"{artifact['file']}: {artifact['backend']}")
        try:
            result = run_bench(
                artifact["path"],
                backend=artifact["backend"],
                providers=providers,
                batch_sizes=batch_sizes,
                threads=threads,
                warmup=warmup,
                iterations=iterations,
                duration=duration,
                repeats=repeats,
                evaluate=evaluate,
                progress=progress,
                trt_cache=trt_cache,
                reference=reference,
                log=lambda m, f=artifact["file"]: log(f"{f}: {m}"),
            )
        except EdgeKDError as err:  # e.g. torch not installed for a torch program: that file only
            if artifact["file"] == "model.onnx":
                raise
            skipped.append(_skipped(artifact, str(err)))
            log(f"{artifact['file']}: skipped: {err}")
            continue
        results.append(result)
    if not results:
        raise EdgeKDError(
            f"--all: no artifact of {resolved.bundle} can run here"
            + (f" ({skipped[0]['file']}: {skipped[0]['reason']})" if skipped else "")
        )
    return {
        "schema": BENCH_ALL_SCHEMA,
        "edgekd": __version__,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": bundle_info(resolved),
        "device": describe_device(),
        "peak_rss": "per artifact" if resets and all(resets) else "cumulative over the artifacts",
        "reference": reference_info,
        "results": results,
        "skipped": skipped,
    }


def _skipped(artifact: dict, reason: str) -> dict:
    return {
        "file": artifact["file"],
        "backend": artifact["backend"],
        "reason": reason,
        "format": file_format(artifact["file"], artifact["backend"]),
        "size_bytes": artifact["path"].stat().st_size,
    }


def _card_models(target: Target) -> dict:
    from edgekd.card.io import load_card

    try:
        return load_card(target.bundle).get("models") or {}
    except EdgeKDError:
        return {}


def all_headers(rows: list[dict] | None = None) -> dict[str, str]:
    """Columns of :func:`all_rows`: artifact, timing, memory, the metric table, agreement; with
    ``rows``, only the columns some row has a value in (no GPU column on a CPU machine)."""
    headers = {
        "artifact": "artifact",
        "format": "format",
        "backend": "backend",
        "size_mb": "size MB",
        "batch": "batch",
        "p50_ms": "p50 ms",
        "p10_p90_ms": "p10-p90 ms",
        "repeat_p50_ms": "p50 of repeats",
        "p99_ms": "p99 ms",
        "images_per_s": "images/s",
        "peak_rss_mb": "peak RSS MB",
        "gpu_memory_mb": "GPU MB",
        **{m.key: m.label for m in METRICS.values()},
        "agreement": "agree onnx",
        "worst_cell": "worst cell vs onnx",
        "agreement_student": "agree student",
    }
    if rows is None:
        return headers
    return {k: v for k, v in headers.items() if any(r.get(k) is not None for r in rows)}


def file_format(file: str, backend: str | None, providers: Sequence[str] = ()) -> str:
    """``ONNX fp16 (CUDA)``, ``ONNX int8 TensorRT form (CPU)``, ``TensorRT int8``: the file's
    precision, whether it is the form meant for TensorRT, and what runs it (the first of
    ``providers``, when given)."""
    precision = file_precision(file)
    if backend == "tensorrt":
        return f"TensorRT {precision}"
    if backend == "onnxruntime":
        where = providers[0].replace("ExecutionProvider", "") if providers else ""
        form = " TensorRT form" if file == INT8_TRT_ONNX else ""
        return f"ONNX {precision}{form}" + (f" ({where})" if where else "")
    return f"{backend} {precision}"


def artifact_format(result: dict) -> str:
    """:func:`file_format` of a bench result: its file, backend and onnxruntime providers."""
    return file_format(
        result["artifact"]["file"], result["backend"], (result.get("runtime") or {}).get("providers") or []
    )


def all_rows(result: dict) -> list[dict]:
    """One row per artifact and batch size of a :func:`run_bench_all` result, the metrics and
    agreement on each artifact's first row; then a row per skipped artifact (``skipped`` in its
    batch column; the reason is a line under the table, :func:`describe_all`)."""
    from edgekd.bench.evaluate import student_agreement_bounds

    reference = result.get("reference") or {}
    rows = []
    for r in result["results"]:
        ev = r.get("eval") or {}
        agree = (ev.get("agreement") or {}).get("prediction_agreement")
        bounds = student_agreement_bounds(agree, reference.get("vs_student_at_build"))
        for i, timing in enumerate(r["results"]):
            lat = timing["latency_ms"]
            row = {
                "artifact": r["artifact"]["file"],
                "format": artifact_format(r),
                "backend": r["backend"],
                "size_mb": (
                    r["artifact"]["size_bytes"] / 1e6
                    if isinstance(r["artifact"].get("size_bytes"), (int, float))
                    else None
                ),
                "batch": timing["batch"],
                "p50_ms": lat.get("p50"),
                **latency_cells(timing),
                "p99_ms": lat.get("p99"),
                "images_per_s": timing.get("throughput_ips"),
                "peak_rss_mb": timing.get("peak_rss_mb"),
                "gpu_memory_mb": timing.get("gpu_memory_mb"),
            }
            first = i == 0
            row.update({m.key: m.read(ev) if first else None for m in METRICS.values()})
            row["agreement"] = agree if first else None
            row["worst_cell"] = (
                worst_cell_text((ev.get("agreement") or {}).get("worst_cell_agreement")) if first else None
            )
            row["agreement_student"] = (
                None
                if not first or bounds is None
                else f"{bounds[0]:.4f}"
                if bounds[0] == bounds[1]
                else f"{bounds[0]:.4f}-{bounds[1]:.4f}"
            )
            rows.append(row)
    for item in result.get("skipped") or []:
        size = item.get("size_bytes")
        rows.append(
            {
                "artifact": item.get("file"),
                "format": item.get("format"),
                "backend": item.get("backend"),
                "size_mb": size / 1e6 if isinstance(size, (int, float)) else None,
                "batch": "skipped",
            }
        )
    return rows


def worst_cell_text(worst: dict | None) -> str | None:
    """``"0.9400 square / warm"``: a worst cell's agreement and which cell it is.

    >>> worst_cell_text({"class": "square", "group": "warm", "agreement": 0.94, "images": 100})
    '0.9400 square / warm'
    """
    if not isinstance(worst, dict) or not isinstance(worst.get("agreement"), (int, float)):
        return None
    return f"{worst['agreement']:.4f} {worst.get('class')} / {worst.get('group')}"


def describe_all(result: dict) -> list[str]:
    """The lines under the --all table: device, what agreement means, memory, skipped files."""
    from edgekd.bench.report import describe_result

    first = result["results"][0] if result.get("results") else {"device": result.get("device")}
    lines = describe_result({**first, "eval": None})[:1]  # the device line
    reference = result.get("reference")
    if isinstance(reference, dict):
        build = reference.get("vs_student_at_build")
        lines.append(
            f"agreement: with {reference.get('file')} through {reference.get('runtime')} on "
            f"the {reference.get('images')} eval images (the student's predictions are not "
            f"in the bundle; {reference.get('file')} agreed with the student on "
            f"{'-' if build is None else f'{build:.4f}'} of them at build, hence the "
            f"student column); worst cell: the (class, group) cell of at least the card's "
            f"min_support images where it agrees least"
        )
    if result.get("peak_rss") is not None:
        lines.append(f"peak RSS: process peak, {result['peak_rss']}")
    for item in result.get("skipped") or []:
        lines.append(f"skipped {item.get('file')}: {item.get('reason')}")
    return lines
