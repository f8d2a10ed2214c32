"""The timed loop: first inference, warm-up, then timed calls for a count or a duration.

Each timed call is measured on its own with ``time.perf_counter_ns`` around ``infer(x)`` only,
so the progress bar and bookkeeping stay outside the measured interval. Throughput is
``batch x calls / wall time of the whole timed loop`` (images per second).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np

from edgekd.bench.stats import latency_stats

__all__ = ["random_batch", "time_batch"]


def random_batch(batch: int, chw: tuple[int, int, int], dtype=np.float32, seed: int = 0) -> np.ndarray:
    """A standard-normal batch (N, C, H, W); the values do not matter for timing."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *chw), dtype=np.float32).astype(dtype, copy=False)


def time_batch(infer: Callable[[np.ndarray], object], x: np.ndarray, *, warmup: int = 10,
               iterations: int | None = 100, duration: float | None = None, progress: bool = False,
               desc: str = "", sampler=None) -> dict:
    """Time ``infer(x)``.

    Parameters
    ----------
    infer : callable
        One inference on the batch ``x``.
    x : ndarray
        The input batch; ``x.shape[0]`` is the batch size.
    warmup : int
        Untimed calls after the first inference.
    iterations, duration : int or float
        Timed calls: exactly ``iterations``, or as many as fit in ``duration`` seconds (at
        least one). Give one of them.
    progress : bool
        Show a tqdm progress line on stderr.
    sampler : context manager, optional
        Entered just before the timed loop and left just after it (power sampling).

    Returns
    -------
    dict
        ``batch``, ``iterations``, ``latency_ms`` (see :func:`edgekd.bench.stats.latency_stats`),
        ``throughput_ips``, ``first_inference_ms``, ``wall_s`` and the raw ``samples_ms``.
    """
    from tqdm import tqdm

    if (iterations is None) == (duration is None):
        raise ValueError("give exactly one of iterations and duration")
    start = time.perf_counter_ns()
    infer(x)
    first_ms = (time.perf_counter_ns() - start) / 1e6
    for _ in range(warmup):
        infer(x)
    samples: list[float] = []
    bar = tqdm(total=iterations, desc=desc, unit="it", leave=False, disable=not progress,
               file=sys.stderr, mininterval=0.5)
    with bar, (sampler if sampler is not None else nullcontext()):
        loop_start = time.perf_counter_ns()
        deadline = loop_start + int(duration * 1e9) if duration is not None else None
        while True:
            t0 = time.perf_counter_ns()
            infer(x)
            t1 = time.perf_counter_ns()
            samples.append((t1 - t0) / 1e6)
            bar.update()
            if (iterations is not None and len(samples) >= iterations) or \
                    (deadline is not None and t1 >= deadline):
                break
        wall_s = (time.perf_counter_ns() - loop_start) / 1e9
    batch = int(x.shape[0])
    return {
        "batch": batch,
        "iterations": len(samples),
        "latency_ms": latency_stats(samples),
        "throughput_ips": batch * len(samples) / wall_s if wall_s > 0 else None,
        "first_inference_ms": first_ms,
        "wall_s": wall_s,
        "samples_ms": samples,
    }
