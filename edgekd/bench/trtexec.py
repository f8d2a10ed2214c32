"""Run NVIDIA's ``trtexec`` on an ONNX model or a TensorRT engine and read its performance summary.

trtexec ends a timing run with a block like (TensorRT 8.4 to 10; 8.0 to 8.2 print only the 99th
percentile, 8.4 and later the 90th, 95th and 99th)::

    [I] === Performance summary ===
    [I] Throughput: 318.007 qps
    [I] Latency: min = 3.12671 ms, max = 3.15479 ms, mean = 3.14068 ms, median = 3.14062 ms,
        percentile(90%) = 3.14587 ms, percentile(95%) = 3.14771 ms, percentile(99%) = 3.15039 ms
    [I] Enqueue Time: ...   [I] H2D Latency: ...   [I] GPU Compute Time: ...   [I] D2H Latency: ...
    [I] Total Host Walltime: 3.00622 s
    &&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=...

"Latency" is the host latency of one inference, H2D + GPU compute + D2H (TensorRT developer
guide, "trtexec"). Throughput counts inferences (queries) per second, so with batch size ``B``
images per second = qps x B. The version tag encodes ``major.minor.patch`` as
``M*1000 + m*100 + p`` up to TensorRT 8 (v8601 = 8.6.1) and ``M*10000 + m*100 + p`` from 10
(v100300 = 10.3.0).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = ["find_trtexec", "trtexec_command", "parse_trtexec_output", "decode_version", "run_trtexec"]

_FIXED_PLACES = ("/usr/src/tensorrt/bin/trtexec",)  # where JetPack puts it (not on PATH)
_METRICS = {
    "Latency": "latency_ms",
    "Enqueue Time": "enqueue_ms",
    "H2D Latency": "h2d_ms",
    "GPU Compute Time": "gpu_compute_ms",
    "D2H Latency": "d2h_ms",
}
_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_METRIC_LINE = re.compile(r"(?:^|\]\s)(" + "|".join(map(re.escape, _METRICS)) + r"): (.*?)\s*$")
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)) = " + _NUMBER + " ms")
_THROUGHPUT = re.compile(r"\bThroughput: " + _NUMBER + " qps")
_WALLTIME = re.compile(r"Total Host Walltime: " + _NUMBER + " s")
_GPU_TOTAL = re.compile(r"Total GPU Compute Time: " + _NUMBER + " s")
_QUERIES = re.compile(r"Timing trace has (\d+) queries")
_VERSION_TAG = re.compile(r"\[TensorRT v(\d+)\]")
_VERSION_LINE = re.compile(r"TensorRT version: (\d+\.\d+\.\d+)")


def find_trtexec() -> str:
    """Path of trtexec (PATH, then JetPack's /usr/src/tensorrt/bin), or an EdgeKDError."""
    for candidate in (shutil.which("trtexec"), *_FIXED_PLACES):
        if candidate and Path(candidate).is_file():
            return candidate
    raise EdgeKDError(
        "--backend trtexec: trtexec not found on PATH or in /usr/src/tensorrt/bin; "
        "it comes with TensorRT (JetPack on a Jetson)"
    )


def decode_version(tag: int) -> str:
    """``8601 -> "8.6.1"``, ``100300 -> "10.3.0"`` (the number in ``[TensorRT vNNNN]``)."""
    if tag >= 10000:
        return f"{tag // 10000}.{tag // 100 % 100}.{tag % 100}"
    return f"{tag // 1000}.{tag // 100 % 10}.{tag % 100}"


def _stats(text: str) -> dict[str, float | None]:
    stats: dict[str, float | None] = {"mean": None, "std": None}
    for name, q, value in _STAT.findall(text):
        if name == "median":
            key = "p50"
        elif q:
            key = f"p{float(q):g}"
        else:
            key = name
        stats[key] = float(value)
    return stats


def parse_trtexec_output(text: str, *, batch: int = 1) -> dict:
    """The performance summary of one trtexec run.

    Parameters
    ----------
    text : str
        trtexec's whole output (stdout and stderr).
    batch : int
        Images per inference, to turn queries per second into images per second.

    Returns
    -------
    dict
        ``tensorrt_version``, ``queries``, ``throughput_qps``, ``throughput_ips`` (= qps x batch),
        ``latency_ms``, ``enqueue_ms``, ``h2d_ms``, ``gpu_compute_ms``, ``d2h_ms`` (each with
        ``min``, ``max``, ``mean``, ``p50`` (trtexec's median) and the percentiles printed, e.g.
        ``p90``, ``p95``, ``p99``; ``std`` is None, trtexec does not print it),
        ``total_host_walltime_s`` and ``total_gpu_compute_s``.

    Raises
    ------
    EdgeKDError
        When the run failed or printed no performance summary.
    """
    if "&&&& FAILED" in text or "=== Performance summary ===" not in text:
        errors = [ln.strip() for ln in text.splitlines() if "[E]" in ln or "Error" in ln]
        last = (errors or [ln.strip() for ln in text.splitlines() if ln.strip()] or ["no output"])[-1]
        raise EdgeKDError(f"trtexec: no performance summary (it failed: {last[:200]})")
    summary = text.split("=== Performance summary ===", 1)[1]
    out: dict = {"tensorrt_version": None, "queries": None}
    if m := _VERSION_LINE.search(text):
        out["tensorrt_version"] = m.group(1)
    elif m := _VERSION_TAG.search(text):
        out["tensorrt_version"] = decode_version(int(m.group(1)))
    if m := _QUERIES.search(text):
        out["queries"] = int(m.group(1))
    m = _THROUGHPUT.search(summary)
    out["throughput_qps"] = float(m.group(1)) if m else None
    out["throughput_ips"] = out["throughput_qps"] * batch if m else None
    for key in _METRICS.values():
        out[key] = None
    for line in summary.splitlines():
        if m := _METRIC_LINE.search(line):
            out[_METRICS[m.group(1)]] = _stats(m.group(2))
    m = _WALLTIME.search(summary)
    out["total_host_walltime_s"] = float(m.group(1)) if m else None
    m = _GPU_TOTAL.search(summary)
    out["total_gpu_compute_s"] = float(m.group(1)) if m else None
    if out["latency_ms"] is None:
        raise EdgeKDError("trtexec: its performance summary has no 'Latency:' line")
    return out


def trtexec_command(
    model: Path,
    *,
    batch: int,
    input_name: str | None,
    chw: tuple[int, int, int],
    warmup_ms: int = 200,
    iterations: int | None = None,
    duration_s: float | None = None,
    executable: str = "trtexec",
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The trtexec command line that times ``model`` at one batch size.

    An ``.engine`` is loaded with ``--loadEngine``, anything else is built from ONNX with
    ``--onnx``. ``--shapes`` is passed when the input name is known (dynamic batch). With
    ``iterations`` the run is that many inferences (``--duration=0``); otherwise it lasts
    ``duration_s`` seconds. trtexec's warm-up is time-based (``--warmUp`` in ms).
    """
    model = Path(model)
    cmd = [executable, f"--loadEngine={model}" if model.suffix == ".engine" else f"--onnx={model}"]
    if input_name:
        c, h, w = chw
        cmd.append(f"--shapes={input_name}:{batch}x{c}x{h}x{w}")
    cmd.append(f"--warmUp={warmup_ms}")
    if iterations is not None:
        cmd += [f"--iterations={iterations}", "--duration=0"]
    else:
        cmd.append(f"--duration={duration_s if duration_s is not None else 3:g}")
    return cmd + list(extra)


def run_trtexec(
    model: Path,
    *,
    batch: int,
    input_name: str | None,
    chw: tuple[int, int, int],
    warmup_ms: int = 200,
    iterations: int | None = None,
    duration_s: float | None = None,
    extra: tuple[str, ...] = (),
) -> dict:
    """Run trtexec at one batch size and parse its summary (see :func:`parse_trtexec_output`)."""
    cmd = trtexec_command(
        model,
        batch=batch,
        input_name=input_name,
        chw=chw,
        warmup_ms=warmup_ms,
        iterations=iterations,
        duration_s=duration_s,
        executable=find_trtexec(),
        extra=extra,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    result = parse_trtexec_output(proc.stdout + "\n" + proc.stderr, batch=batch)
    result["command"] = cmd
    return result
