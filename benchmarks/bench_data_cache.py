"""Peak resident memory of a build whose images do not need to fit in memory (``data.cache_dir``).

Generates a CSV-folder data set (FORMATS: ``train.csv``, ``val.csv``, ``test.csv`` with
``path,label,group`` beside the images) of ``--images`` JPEGs at ``--size`` px: smooth noise with
one of four shapes (the class) tinted warm or cool (the protected group, 80% aligned with the
class in train and validation, balanced in test). 40,000 images at 128 px are 1.97 GB of uint8
pixels. The images are kept in ``--data`` across runs. Then it runs, each as its own process
whose peak resident memory (``ru_maxrss`` from ``wait4``) it reports:

1. ``edgekd build`` on a ``--subset`` of the images (the fixed cost: torch, the models, their
   activations, onnxruntime), with ``data.cache_dir`` (decoded into the cache, then read in
   batches) and with every split copied into memory first (the in-memory path); timm's
   ``test_efficientnet`` as teacher and student, 1 epoch, ONNX and INT8, the bundle's eval set;
2. the same build on all images, decoding them into a fresh cache entry;
3. the data stage again: the cache is read (no image decoded) and every split is read once
   through the batch reader;
4. with ``--in-memory-all``, the in-memory path on all images (else its growth on the subset is
   scaled to all images).

    OMP_NUM_THREADS=1 python benchmarks/bench_data_cache.py [--data /tmp/bench_data_cache]
        [--images 40000] [--size 128] [--subset 4000] [--epochs 1] [--in-memory-all]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _results import write_result

SHAPES = ["ellipse", "square", "triangle", "cross"]
GROUPS = ["warm", "cool"]
TINTS = {"warm": (230, 120, 40), "cool": (40, 110, 230)}
REPO = Path(__file__).resolve().parents[1]


def _draw(task: tuple[int, int, str, str, str]) -> None:
    """One image: smooth noise, a shape of the class in the group's tint, as a JPEG."""
    from PIL import Image, ImageDraw

    index, size, shape, group, path = task
    rng = np.random.default_rng(index)
    coarse = rng.integers(40, 216, (8, 8, 3), dtype=np.uint8)
    background = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    pixels = np.asarray(background, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    r = int(size * rng.uniform(0.18, 0.3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    colour = tuple(int(c + rng.integers(-20, 21)) for c in TINTS[group])
    if shape == "ellipse":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        draw.rectangle((cx - r, cy - r // 3, cx + r, cy + r // 3), fill=colour)
        draw.rectangle((cx - r // 3, cy - r, cx + r // 3, cy + r), fill=colour)
    image.save(path, quality=90)


def generate(root: Path, images: int, size: int, jobs: int) -> dict[str, list[tuple[str, str, str]]]:
    """The data set's rows per split, generating the images unless ``root`` holds them."""
    marker = root / "generated.json"
    test = val = min(2000, images // 10)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(SHAPES), images)
    aligned = rng.random(images) < 0.8
    groups = np.where(aligned, labels % 2, 1 - labels % 2)
    groups[-test:] = np.arange(test) % 2  # balanced test
    rows = [(f"img/{i // 1000:03d}/{i:06d}.jpg", SHAPES[labels[i]], GROUPS[groups[i]]) for i in range(images)]
    splits = {
        "train": rows[: images - val - test],
        "val": rows[images - val - test : images - test],
        "test": rows[images - test :],
    }
    wanted = {"images": images, "size": size, "version": 1}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return splits
    started = time.perf_counter()
    for folder in {Path(r[0]).parent for r in rows}:
        (root / folder).mkdir(parents=True, exist_ok=True)
    tasks = [(i, size, r[1], r[2], str(root / r[0])) for i, r in enumerate(rows)]
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_draw, tasks, chunksize=256))
    marker.write_text(json.dumps(wanted))
    print(
        f"generated {images} JPEGs at {size}px in {root} ({time.perf_counter() - started:.0f} s, "
        f"{sum(f.stat().st_size for f in (root / 'img').rglob('*.jpg')) / 2**20:.0f} MB)"
    )
    return splits


def write_csvs(root: Path, splits: dict, share: float, tag: str) -> dict[str, str]:
    """``<split>-<tag>.csv`` with the first ``share`` of each split's rows; their names."""
    names = {}
    for split, rows in splits.items():
        names[split] = f"{split}-{tag}.csv"
        with open(root / names[split], "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "group"])
            writer.writerows(rows[: max(1, round(len(rows) * share))])
    return names


def recipe(path: Path, root: Path, csvs: dict, cache: Path, size: int, epochs: int) -> Path:
    path.write_text(f"""
name: bench-data-cache
threads: 1
data: {{source: csv, root: {root}, image_size: {size}, cache_dir: {cache}, workers: 2,
        train_csv: {csvs["train"]}, val_csv: {csvs["val"]}, test_csv: {csvs["test"]},
        classes: {SHAPES}, groups: {GROUPS}, protected_attribute: tint}}
teacher: {{arch: test_efficientnet, epochs: {epochs}, batch_size: 64}}
student: {{arch: test_efficientnet, epochs: {epochs}, batch_size: 64}}
distill: {{method: kd}}
export:
  onnx: {{exporter: torchscript, opset: 17}}
  int8: {{enabled: true, calibration_samples: 64, min_agreement: 0.0}}
card: {{bootstrap_resamples: 100}}
bundle: {{include_eval_set: true}}
""")
    return path


# Copies every split into anonymous memory before the build: what holding the decoded images in
# RAM costs (read through the file, so the copy is the only resident form).
IN_MEMORY = """
import sys
import edgekd.pipeline as pipeline
from edgekd.data.rows import take
from edgekd.data.splits import Split
load = pipeline.load_data
def in_memory(cfg, *, seed):
    data = load(cfg, seed=seed)
    for name in ("train", "val", "test"):
        s = getattr(data, name)
        setattr(data, name, Split(take(s.images, slice(None)), s.labels, s.groups))
    return data
pipeline.load_data = in_memory
from edgekd.cli import main
sys.argv = ["edgekd", *sys.argv[1:]]
main()
"""

# The data stage of a second build: counts the decodes and reads every split once.
READ_BACK = """
import sys, time
import edgekd.data._images as images
from edgekd.data import load_data
from edgekd.data.rows import batches
from edgekd.recipe import load_recipe
calls = []
decode = images._decode
images._decode = lambda *a: calls.append(1) or decode(*a)
started = time.perf_counter()
data = load_data(load_recipe(sys.argv[1]).data, seed=0)
loaded = time.perf_counter() - started
total = sum(int(b.sum(dtype="int64")) for s in (data.train, data.val, data.test)
            for b in batches(s.images, 256))
print(f"decoded {len(calls)}; load {loaded:.1f} s; full read {time.perf_counter() - started - loaded:.1f} s;"
      f" {type(data.train.images).__name__}; pixel sum {total}")
"""


def run(args: list[str], log: Path) -> tuple[float, float, int]:
    """Run a child process; its wall seconds, peak resident MB and exit code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, child.returncode


def build(name: str, work: Path, recipe_path: Path, in_memory: bool = False) -> dict:
    out = work / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    command = (["-c", IN_MEMORY] if in_memory else ["-m", "edgekd"]) + [
        "build",
        str(recipe_path),
        "--out",
        str(out),
    ]
    seconds, peak, code = run(command, work / f"{name}.log")
    if code not in (0, 1):  # 1: a release gate failed, the bundle is still written
        sys.exit(f"{name}: exit {code}; see {work / f'{name}.log'}")
    card = json.loads(next(out.rglob("card.json")).read_text())
    models = {
        k: v.get("size_bytes") or 0
        for k, v in card["models"].items()
        if k in ("teacher", "baseline", "student")
    }
    return {
        "name": name,
        "seconds": seconds,
        "peak_mb": peak,
        "models_bytes": models,
        "top1": {k: card["models"][k]["metrics"]["top1"] for k in models},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/bench_data_cache"))
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--subset", type=int, default=4_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="processes generating images")
    parser.add_argument(
        "--in-memory-all",
        action="store_true",
        help="also build all images in memory (else the subset's growth is scaled)",
    )
    args = parser.parse_args()

    root = args.data / f"csv-{args.images}-{args.size}px"
    work = args.data / "work"
    work.mkdir(parents=True, exist_ok=True)
    splits = generate(root, args.images, args.size, args.jobs)
    pixels_mb = args.images * args.size * args.size * 3 / 2**20
    share = args.subset / args.images
    full_csvs = write_csvs(root, splits, 1.0, "all")
    subset_csvs = write_csvs(root, splits, share, f"sub{args.subset}")
    print(
        f"{args.images} images at {args.size}px = {pixels_mb:.0f} MB of uint8 pixels "
        f"({', '.join(f'{k} {len(v)}' for k, v in splits.items())}); subset {args.subset}; "
        f"OMP_NUM_THREADS=1, recipe threads 1"
    )

    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first build decodes
    full = recipe(work / "all.yaml", root, full_csvs, cache, args.size, args.epochs)
    sub = recipe(work / "subset.yaml", root, subset_csvs, cache, args.size, args.epochs)
    # the import line's peak, the fixed cost under everything else
    _, runtime_mb, _ = run(["-c", "import torch, timm, onnxruntime, edgekd.pipeline"], work / "imports.log")
    rows = [
        build("cached-subset", work, sub),
        build("in-memory-subset", work, sub, in_memory=True),
        build("cached-all", work, full),
    ]
    seconds, peak, code = run(["-c", READ_BACK, str(full)], work / "read-back.log")
    read_back = (work / "read-back.log").read_text().strip().splitlines()[-1]
    print(
        f"second data stage (cache read, every split read once): {read_back}; peak RSS {peak:.0f} MB, "
        f"{seconds:.0f} s"
    )
    if args.in_memory_all:
        rows.append(build("in-memory-all", work, full, in_memory=True))

    print(f"\n{'build':<18} {'images':>7} {'peak RSS MB':>12} {'wall s':>8}  top-1 teacher/baseline/student")
    for row, n in zip(rows, [args.subset, args.subset, args.images, args.images]):
        print(
            f"{row['name']:<18} {n:>7} {row['peak_mb']:>12.0f} {row['seconds']:>8.0f}  "
            + " / ".join(f"{v:.3f}" for v in row["top1"].values())
        )
    models_mb = sum(rows[0]["models_bytes"].values()) / 2**20
    cached_sub, memory_sub, cached_all = (r["peak_mb"] for r in rows[:3])
    print(
        f"\nmodels' own size (teacher + baseline + student state dicts): {models_mb:.2f} MB; "
        f"importing torch, timm, onnxruntime and edgekd alone: peak RSS {runtime_mb:.0f} MB"
    )
    print(
        f"cached build: peak RSS {cached_all:.0f} MB on {args.images} images, {cached_sub:.0f} MB "
        f"on {args.subset}: {cached_all - cached_sub:+.0f} MB for {args.images - args.subset} more "
        f"images ({pixels_mb * (1 - share):.0f} MB of pixels)"
    )
    if args.in_memory_all:
        memory_all, how = rows[3]["peak_mb"], "measured"
    else:
        per_image = (memory_sub - cached_sub) / args.subset
        memory_all, how = cached_sub + per_image * args.images, "scaled from the subset"
    print(
        f"in-memory path: peak RSS {memory_sub:.0f} MB on {args.subset} images "
        f"({memory_sub - cached_sub:+.0f} MB against the cache), {memory_all:.0f} MB on "
        f"{args.images} images ({how}): {memory_all / cached_all:.2f}x the cached build"
    )
    target = 1536 + models_mb
    print(
        f"target: peak RSS under 1.5 GB plus the models ({target:.0f} MB): "
        f"{'met' if cached_all < target else 'NOT met'} ({cached_all:.0f} MB)"
    )
    path = write_result(
        "data_cache",
        {
            "images": args.images,
            "image_size": args.size,
            "subset": args.subset,
            "epochs": args.epochs,
            "pixels_mb": round(pixels_mb),
            "imports_peak_mb": round(runtime_mb),
            "models_mb": round(models_mb, 2),
            "rows": [
                {
                    "build": row["name"],
                    "images": n,
                    "peak_mb": round(row["peak_mb"]),
                    "wall_s": round(row["seconds"], 1),
                }
                for row, n in zip(rows, [args.subset, args.subset, args.images, args.images])
            ],
            "second_data_stage": {"peak_mb": round(peak), "wall_s": round(seconds, 1), "log": read_back},
            "in_memory_all_peak_mb": round(memory_all),
            "in_memory_all": how,
            "target_mb": round(target),
            "target_met": bool(cached_all < target),
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
