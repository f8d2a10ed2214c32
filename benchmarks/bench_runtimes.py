"""The quickstart student on this machine: torch eager vs onnxruntime fp32 vs INT8, and the harness.

Everything runs through :func:`edgekd.bench.timing.time_batch` (the loop ``edgekd bench`` uses),
on the same random batch, at batch 1 and 8:

* torch eager fp32: the distilled student's ``best.pt`` loaded into its timm model;
* onnxruntime fp32: the bundle's ``model.onnx``;
* onnxruntime INT8: the bundle's ``model.int8.onnx`` (or ``--int8 PATH``) when there is one;

each with 1 and with 2 threads (``--threads``), ratios against onnxruntime fp32 at the same
thread count; and
* a bare loop (``perf_counter`` around ``session.run``, nothing else) against the harness on the
  same session, to show the harness adds nothing measurable (target: p50 within 5%).

Variants are interleaved round by round (``--rounds``) and the median of the rounds' p50s is
reported, so drift from other load on the machine hits every variant alike. On a shared 2-core
machine the 2-thread rows are at the mercy of other processes (torch's thread barriers suffer
most); the 1-thread rows are the stable comparison. Run after
``make demo``:

    python benchmarks/bench_runtimes.py [--run runs/quickstart] [--iterations 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _results import write_result

from edgekd.bench.timing import random_batch, time_batch
from edgekd.card.table import format_table
from edgekd.export.runtime import OnnxClassifier


def bare_loop_p50(session_run, x: np.ndarray, iterations: int, warmup: int) -> float:
    for _ in range(warmup + 1):
        session_run(x)
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        session_run(x)
        samples.append((time.perf_counter() - t0) * 1000)
    return float(np.median(samples))


def torch_student(run: Path, bundle: Path, classes: int):
    """The distilled student as trained, in eager mode, and a setter for torch's thread count."""
    import torch

    from edgekd.models import create_model
    from edgekd.recipe import load_recipe

    model = create_model(load_recipe(bundle / "recipe.yaml").student, classes, key="student", load=False)
    state = torch.load(run / "stages/student/best.pt", map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state)
    model.eval()

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return infer, torch.set_num_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/quickstart"))
    parser.add_argument("--int8", type=Path, default=None, help="an INT8 ONNX (default: the bundle's)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1", help="thread counts to compare, e.g. 1,2")
    args = parser.parse_args()
    bundle = args.run / "bundle"
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    chw = tuple(preprocess["input_size"])
    thread_counts = [int(t) for t in args.threads.split(",")]
    torch_infer, set_torch_threads = torch_student(args.run, bundle, len(preprocess["class_names"]))

    # (name, threads, infer, before): ``before`` runs ahead of each timing (torch's thread count)
    variants = []
    int8_path = args.int8 or bundle / "model.int8.onnx"
    for n in thread_counts:
        fp32 = OnnxClassifier(bundle / "model.onnx", threads=n)
        variants.append(("onnxruntime fp32", n, fp32.logits, None))
        if int8_path.is_file():
            variants.append(("onnxruntime int8", n, OnnxClassifier(int8_path, threads=n).logits, None))
        variants.append(("torch eager fp32", n, torch_infer, lambda n=n: set_torch_threads(n)))
    if not int8_path.is_file():
        print(f"no INT8 artifact ({int8_path} absent): INT8 rows skipped")
    overhead_session = OnnxClassifier(bundle / "model.onnx", threads=1)

    load_before = os.getloadavg()[0]
    rows = []
    for batch in (1, 8):
        x = random_batch(batch, chw)
        p50s: dict[tuple[str, int], list[float]] = {(v[0], v[1]): [] for v in variants}
        bare, harness = [], []
        for _ in range(args.rounds):
            for name, threads, infer, before in variants:
                if before:
                    before()
                r = time_batch(infer, x, warmup=args.warmup, iterations=args.iterations)
                p50s[(name, threads)].append(r["latency_ms"]["p50"])
            bare.append(bare_loop_p50(overhead_session.logits, x, args.iterations, args.warmup))
            harness.append(
                time_batch(overhead_session.logits, x, warmup=args.warmup, iterations=args.iterations)[
                    "latency_ms"
                ]["p50"]
            )
        for (name, threads), values in p50s.items():
            p50 = statistics.median(values)
            reference = statistics.median(p50s[("onnxruntime fp32", threads)])
            rows.append(
                {
                    "variant": name,
                    "threads": threads,
                    "batch": batch,
                    "p50_ms": p50,
                    "images_per_s": batch * 1000 / p50,
                    "vs_ort_fp32": p50 / reference,
                }
            )
        b, h = statistics.median(bare), statistics.median(harness)
        rows.append(
            {
                "variant": "bare loop, ort fp32",
                "threads": 1,
                "batch": batch,
                "p50_ms": b,
                "images_per_s": batch * 1000 / b,
            }
        )
        rows.append(
            {
                "variant": "edgekd harness, same session",
                "threads": 1,
                "batch": batch,
                "p50_ms": h,
                "images_per_s": batch * 1000 / h,
                "harness_vs_bare": h / b,
            }
        )
    print(
        f"{args.run.name} student, input {chw}, {args.iterations} timed calls x {args.rounds} "
        f"rounds (median of round p50s); load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after, on {os.cpu_count()} cores"
    )
    print(
        format_table(
            rows,
            {
                "variant": "variant",
                "threads": "threads",
                "batch": "batch",
                "p50_ms": "p50 ms",
                "images_per_s": "images/s",
                "vs_ort_fp32": "p50 / ort fp32",
                "harness_vs_bare": "harness / bare",
            },
        )
    )
    path = write_result(
        "runtimes",
        {
            "run": args.run.name,
            "input": list(chw),
            "iterations": args.iterations,
            "rounds": args.rounds,
            "int8_file": int8_path.name if int8_path.is_file() else None,
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "rows": [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows],
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
