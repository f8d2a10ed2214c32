"""Distillation epoch time against a baseline epoch, with and without the teacher-outputs cache.

A KD epoch runs the student like a baseline epoch does, plus the teacher. Without the cache the
frozen teacher runs on every batch; with a warm cache (a second distillation of the same teacher:
another method, a sweep point, a resumed build) its outputs are read from disk. Run:

    python benchmarks/bench_teacher_cache.py [--image-size 64] [--images 1280] [--repeats 2]

It prints the mean seconds per epoch of each and the ratios to the baseline epoch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from _results import write_result

from edgekd.data import load_data
from edgekd.distill import CrossEntropy, KDLoss, TeacherOutputs
from edgekd.models import create_model
from edgekd.recipe import parse_recipe
from edgekd.stages import Stage
from edgekd.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--teacher", default="efficientnet_b3")
    parser.add_argument("--student", default="efficientnet_b0")
    args = parser.parse_args()

    recipe = parse_recipe(
        {
            "name": "bench",
            "data": {
                "image_size": args.image_size,
                "train_size": args.images,
                "val_size": 64,
                "test_size": 64,
                "fresh_train_each_epoch": False,
            },
            "teacher": {"arch": args.teacher, "epochs": 1},
            "student": {"arch": args.student, "epochs": 1, "batch_size": 64},
        }
    )
    data = load_data(recipe.data, seed=0)
    torch.manual_seed(0)
    teacher = create_model(recipe.teacher, data.num_classes, key="teacher").eval()
    print(
        f"{args.student} student, {args.teacher} teacher, {args.images} images at "
        f"{args.image_size}px, batch 64, {torch.get_num_threads()} threads, "
        f"{args.repeats} repeats"
    )

    with tempfile.TemporaryDirectory() as tmp:
        warm = TeacherOutputs(teacher, data, cache_dir=f"{tmp}/cache")
        started = time.perf_counter()
        warm.for_epoch(0)
        fill = time.perf_counter() - started

        def epoch_seconds(label: str, objective, cache: bool) -> float:
            times = []
            for repeat in range(args.repeats):
                torch.manual_seed(0)
                student = create_model(recipe.student, data.num_classes, key="student")
                stage = Stage(tmp, f"{label}-{repeat}", {"run": repeat})
                stage.start()
                history = fit(
                    student,
                    objective,
                    data,
                    recipe.student,
                    stage,
                    seed=0,
                    teacher_outputs=TeacherOutputs(teacher, data, cache_dir=f"{tmp}/cache"),
                    cache_teacher=cache,
                    log=lambda m: None,
                )
                times.append(history[0]["seconds"])
            return statistics.mean(times)

        baseline = epoch_seconds("baseline", CrossEntropy(), cache=False)
        live = epoch_seconds("kd-live", KDLoss(), cache=False)
        cached = epoch_seconds("kd-cached", KDLoss(), cache=True)

    rows = [
        ("baseline epoch (CE)", baseline),
        ("KD epoch, teacher on every batch", live),
        ("KD epoch, warm teacher cache", cached),
    ]
    width = max(len(r[0]) for r in rows)
    for label, seconds in rows:
        print(f"{label:<{width}}  {seconds:7.2f} s   x{seconds / baseline:.2f} of baseline")
    print(f"{'filling the cache once (teacher inference)':<{width}}  {fill:7.2f} s")
    path = write_result(
        "teacher_cache",
        {
            "teacher": args.teacher,
            "student": args.student,
            "images": args.images,
            "image_size": args.image_size,
            "batch_size": 64,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "rows": [
                {"epoch": label, "seconds": round(seconds, 3), "vs_baseline": round(seconds / baseline, 3)}
                for label, seconds in rows
            ],
            "cache_fill_seconds": round(fill, 3),
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
