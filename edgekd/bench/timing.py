"""The timed loop: first inference, warm-up, then repeats of timed calls for a count or a duration.

Each timed call is measured on its own with ``time.perf_counter_ns`` around ``infer(x)`` only,
so the progress bar and bookkeeping stay outside the measured interval. The timed calls are
split into ``repeats`` back-to-back loops: the median of each loop shows how far the median
itself moves on this machine (a shared or throttling machine moves it more than the spread of
one loop suggests). Latency statistics are over every timed call; throughput is ``batch x calls
/ wall time of the timed loops`` (images per second).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np

from edgekd.bench.stats import latency_stats

__all__ = ["DEFAULT_REPEATS", "random_batch", "split_calls", "time_batch"]

DEFAULT_REPEATS = 5


def random_batch(batch: int, chw: tuple[int, int, int], dtype=np.float32, seed: int = 0) -> np.ndarray:
    """A standard-normal batch (N, C, H, W); the values do not matter for timing."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *chw), dtype=np.float32).astype(dtype, copy=False)


def split_calls(iterations: int, repeats: int) -> list[int]:
    """``iterations`` timed calls over ``repeats`` loops, as evenly as possible, each at least one
    call (so fewer loops when there are fewer calls than loops).

    >>> split_calls(10, 3)
    [4, 3, 3]
    >>> split_calls(2, 5)
    [1, 1]
    """
    loops = max(1, min(repeats, iterations))
    base, extra = divmod(iterations, loops)
    return [base + (1 if i < extra else 0) for i in range(loops)]


def time_batch(
    infer: Callable[[np.ndarray], object],
    x: np.ndarray,
    *,
    warmup: int = 10,
    iterations: int | None = 100,
    duration: float | None = None,
    repeats: int = DEFAULT_REPEATS,
    progress: bool = False,
    desc: str = "",
    sampler=None,
) -> dict:
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
        Timed calls in all: exactly ``iterations`` (split by :func:`split_calls`), or as many as
        fit in ``duration`` seconds (``duration / repeats`` per loop, at least one call each).
        Give one of them.
    repeats : int
        Back-to-back timed loops (default 5).
    progress : bool
        Show a tqdm progress line on stderr.
    sampler : context manager, optional
        Entered just before the first timed loop and left just after the last (power sampling).

    Returns
    -------
    dict
        ``batch``, ``iterations`` (timed calls in all), ``latency_ms`` (see
        :func:`edgekd.bench.stats.latency_stats`), ``repeats`` (loops run), ``repeat_p50_ms``
        (each loop's median), ``throughput_ips``, ``first_inference_ms``, ``wall_s`` (of the
        timed loops) and the raw ``samples_ms``.
    """
    from tqdm import tqdm

    if (iterations is None) == (duration is None):
        raise ValueError("give exactly one of iterations and duration")
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    start = time.perf_counter_ns()
    infer(x)
    first_ms = (time.perf_counter_ns() - start) / 1e6
    for _ in range(warmup):
        infer(x)
    counts = split_calls(iterations, repeats) if iterations is not None else [None] * repeats
    samples: list[float] = []
    medians: list[float] = []
    wall_ns = 0
    bar = tqdm(
        total=iterations,
        desc=desc,
        unit="it",
        leave=False,
        disable=not progress,
        file=sys.stderr,
        mininterval=0.5,
    )
    with bar, sampler if sampler is not None else nullcontext():
        for count in counts:
            loop: list[float] = []
            loop_start = time.perf_counter_ns()
            deadline = loop_start + int(duration / repeats * 1e9) if duration is not None else None
            while True:
                t0 = time.perf_counter_ns()
                infer(x)
                t1 = time.perf_counter_ns()
                loop.append((t1 - t0) / 1e6)
                bar.update()
                if (count is not None and len(loop) >= count) or (deadline is not None and t1 >= deadline):
                    break
            wall_ns += time.perf_counter_ns() - loop_start
            samples += loop
            medians.append(float(np.median(loop)))
    wall_s = wall_ns / 1e9
    batch = int(x.shape[0])
    return {
        "batch": batch,
        "iterations": len(samples),
        "latency_ms": latency_stats(samples),
        "repeats": len(medians),
        "repeat_p50_ms": medians,
        "throughput_ips": batch * len(samples) / wall_s if wall_s > 0 else None,
        "first_inference_ms": first_ms,
        "wall_s": wall_s,
        "samples_ms": samples,
    }
