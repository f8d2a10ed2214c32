"""The levers of a CPU training step, each against the quickstart's setting in the same run.

    python benchmarks/bench_train_step.py [--arch efficientnet_b3] [--steps 12] [--compile]

One training step (forward, backward, AdamW) of a timm model on a batch of 32 random images,
channels-last, as the training loop runs it. Compared, each as a ratio to the reference (48 px,
fused AdamW, fp32, eager):

* image size 64 against 48;
* AdamW's per-parameter loop (``fused=False``) against the fused kernel;
* bfloat16 autocast against fp32;
* one thread against all of them;
* with ``--compile``: ``torch.compile`` of the model (its compile time printed apart).

Timings on a shared 2-core machine are noisy, so every setting runs ``--repeats`` times,
interleaved with the reference, and the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _results import write_result


def _step_ms(
    arch: str,
    *,
    size: int = 48,
    fused: bool = True,
    bf16: bool = False,
    threads: int | None = None,
    compile_model: bool = False,
    steps: int = 12,
) -> tuple[float, float]:
    import timm

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = timm.create_model(arch, num_classes=4).to(memory_format=torch.channels_last)
        run = torch.compile(model) if compile_model else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
        x = torch.randn(32, 3, size, size).to(memory_format=torch.channels_last)
        y = torch.randint(0, 4, (32,))
        started = time.perf_counter()
        for i in range(steps + 3):
            if i == 3:  # the first steps warm up oneDNN (and compile)
                warmup = time.perf_counter() - started
                started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(run(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / steps * 1000, warmup
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="efficientnet_b3")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    args = parser.parse_args()

    settings = {
        "64 px": {"size": 64},
        "AdamW per-parameter loop (fused=False)": {"fused": False},
        "bfloat16 autocast": {"bf16": True},
        "1 thread": {"threads": 1},
    }
    if args.compile:
        settings["torch.compile"] = {"compile_model": True}
    print(
        f"{args.arch}, batch 32, {torch.get_num_threads()} threads; reference: 48 px, fused "
        f"AdamW, fp32, eager; median of {args.repeats} runs of {args.steps} steps"
    )
    reference: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, kwargs in settings.items():
            reference.append(_step_ms(args.arch, steps=args.steps)[0])
            ms, warmup = _step_ms(args.arch, steps=args.steps, **kwargs)
            times[name].append(ms)
            if name == "torch.compile":
                print(f"  torch.compile: first 3 steps incl. compilation {warmup:.1f} s")
    ref = statistics.median(reference)
    print(f"{'reference':40s} {ref:7.0f} ms/step")
    rows = [
        {
            "setting": "reference (48 px, fused AdamW, fp32, eager)",
            "ms_per_step": round(ref, 1),
            "vs_reference": 1.0,
        }
    ]
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} {median:7.0f} ms/step   x{median / ref:.2f}")
        rows.append(
            {"setting": name, "ms_per_step": round(median, 1), "vs_reference": round(median / ref, 3)}
        )
    path = write_result(
        f"train_step_{args.arch}",
        {
            "arch": args.arch,
            "batch_size": 32,
            "threads": torch.get_num_threads(),
            "steps": args.steps,
            "repeats": args.repeats,
            "rows": rows,
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
