"""Summary statistics of a list of latencies (numpy only).

Percentiles use linear interpolation between order statistics (Hyndman & Fan 1996, definition 7;
numpy's default): for sorted samples ``x_0 <= ... <= x_{n-1}`` the ``q``-th percentile is
``x_k + f * (x_{k+1} - x_k)`` with ``h = (n - 1) * q / 100``, ``k = floor(h)``, ``f = h - k``.
The standard deviation is the sample one, ``sqrt(sum((x - mean)^2) / (n - 1))`` (0 for one sample).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PERCENTILES", "latency_stats"]

PERCENTILES = (10, 25, 50, 75, 90, 95, 99)


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """Mean, std, min, p10, p25, p50, p75, p90, p95, p99 and max of latencies in milliseconds.

    p50 is the median a bench reports; p10-p90 is its spread (the middle 80% of calls), p25-p75
    the interquartile range.

    Parameters
    ----------
    samples_ms : sequence of float
        One latency per timed call, in milliseconds; at least one.

    Returns
    -------
    dict
        ``mean``, ``std``, ``min``, ``p10``, ``p25``, ``p50``, ``p75``, ``p90``, ``p95``,
        ``p99``, ``max`` (floats, ms).

    Examples
    --------
    >>> latency_stats([1, 2, 3, 4])["p50"]
    2.5
    >>> latency_stats([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])["p10"]
    2.0
    """
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("latency_stats needs a non-empty 1-D sequence of latencies")
    stats = {
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "min": float(x.min()),
    }
    for q, value in zip(PERCENTILES, np.percentile(x, PERCENTILES)):
        stats[f"p{q}"] = float(value)
    stats["max"] = float(x.max())
    return stats
