"""Bootstrap intervals: the vectorised per-resample metrics against recomputing them through
fairlearn (``fairlearn_metrics``, the reference) for every resample, on the same data.

    python benchmarks/bench_bootstrap.py [--images 800] [--resamples 1000] [--naive 20]

The naive loop is timed on ``--naive`` resamples and extrapolated to ``--resamples``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _results import write_result

from edgekd.fairness.bootstrap import bootstrap_intervals
from edgekd.fairness.reference import fairlearn_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.images)
    pred = np.where(rng.random(args.images) < 0.7, y, rng.integers(0, args.classes, args.images))
    groups = rng.integers(0, 2, args.images)
    names = [str(c) for c in range(args.classes)]

    started = time.perf_counter()
    bootstrap_intervals(y, pred, groups, num_classes=args.classes, num_groups=2, resamples=args.resamples)
    fast = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.naive):
        idx = rng.integers(0, args.images, args.images)
        fairlearn_metrics(y[idx], pred[idx], groups[idx], class_names=names, group_names=["a", "b"])
    naive = (time.perf_counter() - started) / args.naive * args.resamples
    print(f"{args.resamples} resamples of {args.images} images, {args.classes} classes, 2 groups")
    print(f"vectorised (np.bincount per resample)       {fast:8.2f} s")
    print(f"fairlearn per resample (from {args.naive} timed)   {naive:8.2f} s")
    print(f"ratio naive / vectorised                    {naive / fast:8.0f}x")
    path = write_result(
        "bootstrap",
        {
            "images": args.images,
            "classes": args.classes,
            "groups": 2,
            "resamples": args.resamples,
            "naive_resamples_timed": args.naive,
            "vectorised_s": round(fast, 4),
            "fairlearn_s_extrapolated": round(naive, 2),
            "ratio": round(naive / fast, 1),
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
