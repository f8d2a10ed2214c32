"""Teacher, baseline, distilled and debiased student of a recipe over several training seeds.

    python benchmarks/bench_quickstart_seeds.py                          # quickstart, seeds 0 1 2
    python benchmarks/bench_quickstart_seeds.py --seeds 0,1,2,3,4 --jobs 2
    python benchmarks/bench_quickstart_seeds.py --variant "kd T2=distill.temperature=2" \\
        --variant "rkd=distill.method=rkd"

A top-1 on a few hundred test images moves by a few points between training seeds, so one build
cannot say whether distillation helped. Per seed this trains the teacher and the baseline once
and distils that teacher into every student variant:

* ``distilled``: the recipe with its debiasing off (the same student without the adversary and
  reweighing);
* ``debiased``: the recipe as written, when it has a ``debias`` section;
* each ``--variant NAME=KEY=VALUE[;KEY=VALUE...]``: the recipe with those ``--set`` overrides
  (one that changes ``teacher`` or ``student`` trains its own teacher and baseline, reported as
  ``NAME: teacher`` and ``NAME: baseline``).

The data are those of the recipe's ``seed`` for every training seed (the seed moves the weights,
the batch order and the adversary, not the images), exactly as ``seeds:`` in a recipe does. Stages
are hash-keyed like a build's, so a re-run reuses what finished. ``--jobs 2`` trains two seeds at
once with one thread each (on a 2-core machine more throughput than one process with two).

Prints the per-seed table (top-1 / mean |disparity| / adversary accuracy against its reference),
the mean +- sd and median of each model, and the quickstart's targets on the medians: the shipped
student (``debiased`` if the recipe debiases, else ``distilled``) against baseline and teacher, and
debiasing against the same student without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_result  # noqa: E402

ROLES = ("teacher", "baseline")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"kd T2=distill.temperature=2;distill.alpha=0.5"`` -> ``("kd T2", [overrides])``."""
    name, sep, sets = text.partition("=")
    if not sep or not name.strip() or not sets.strip():
        raise SystemExit(f"--variant {text!r}: expected NAME=KEY=VALUE[;KEY=VALUE...]")
    return name.strip(), [s.strip() for s in sets.split(";") if s.strip()]


def _metrics(trained, data) -> dict:
    from edgekd.fairness.counts import CellCounts, mean_abs_disparity, top1

    counts = CellCounts(
        data.test.labels,
        trained.test_logits.argmax(1),
        data.test.groups,
        num_classes=data.num_classes,
        num_groups=len(data.group_names),
    )
    last = trained.history[-1] if trained.history else {}
    return {
        "top1": top1(counts),
        "mean_abs_disparity": mean_abs_disparity(counts),
        "adversary_top1": last.get("adversary_top1"),
        "adversary_reference": last.get("adversary_reference"),
    }


def run_seed(
    recipe_path: str, overrides: list[str], variants: dict[str, list[str]], seed: int, out: str, threads: int
) -> dict:
    """Train one seed's teacher, baseline and student variants; their test metrics and times."""
    import torch

    from edgekd.context import BuildContext
    from edgekd.data import load_data
    from edgekd.recipe import load_recipe
    from edgekd.train.stage import train_models

    torch.set_num_threads(threads)
    base = load_recipe(recipe_path, tuple(overrides))
    data = load_data(base.data, seed=base.seed)
    seed_dir = Path(out) / base.name / f"seed-{seed}"
    results: dict[str, dict] = {}
    log_path = seed_dir / "log.txt"
    seed_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log_file:

        def log(message: str) -> None:
            print(f"[seed {seed}] {message}", file=log_file, flush=True)

        for name, extra in variants.items():
            recipe = load_recipe(recipe_path, tuple(overrides) + tuple(extra))
            if recipe.data != base.data:
                raise SystemExit(f"--variant {name}: changes data; compare data with --set runs")
            # a variant that changes the teacher or the student's training gets its own teacher
            # and baseline (stage directories are per name: sharing would retrain them in turn)
            own = (recipe.teacher, recipe.student) != (base.teacher, base.student)
            slug = name.replace(" ", "_").replace("/", "_")
            shared = seed_dir / f"own-{slug}" if own else seed_dir
            started = time.perf_counter()
            models = train_models(
                recipe,
                data,
                run_dir=seed_dir / slug,
                shared_dir=shared,
                seed=seed,
                ctx=BuildContext(log=log, dist=_single()),
            )
            for role in ROLES:
                if own:
                    results[f"{name}: {role}"] = _metrics(models[role], data)
                else:
                    results.setdefault(role, _metrics(models[role], data))
            results[name] = {**_metrics(models["student"], data), "seconds": time.perf_counter() - started}
    (seed_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


def _single():
    from edgekd.train.distributed import SINGLE

    return SINGLE


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summarise(per_seed: dict[int, dict], names: list[str]) -> list[str]:
    lines = []
    header = "| seed | " + " | ".join(f"{n} top-1 / \\|disp\\|" for n in names) + " |"
    lines += [header, "|---|" + "---|" * len(names)]
    for seed, results in per_seed.items():
        cells = [f"{_fmt(results[n]['top1'])} / {_fmt(results[n]['mean_abs_disparity'])}" for n in names]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    for label, stat in (("mean +- sd", _mean_sd), ("median", _median)):
        cells = [
            f"{stat([r[n]['top1'] for r in per_seed.values()])} / "
            f"{stat([r[n]['mean_abs_disparity'] for r in per_seed.values()])}"
            for n in names
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    adversary = [
        (n, [(r[n]["adversary_top1"], r[n]["adversary_reference"]) for r in per_seed.values()])
        for n in names
        if any(r[n].get("adversary_top1") is not None for r in per_seed.values())
    ]
    for name, pairs in adversary:
        lines.append(
            f"\n{name}: adversary accuracy (last epoch) against the accuracy its criterion "
            "leaves it: " + ", ".join(f"{_fmt(a)} vs {_fmt(b)}" for a, b in pairs)
        )
    return lines


def summary(per_seed: dict[int, dict], names: list[str]) -> dict[str, dict]:
    """Mean, sample standard deviation and median over seeds of each model's test metrics."""
    out: dict[str, dict] = {}
    for name in names:
        out[name] = {}
        for key in ("top1", "mean_abs_disparity", "adversary_top1", "adversary_reference"):
            values = [r[name][key] for r in per_seed.values() if r[name].get(key) is not None]
            if values:
                out[name][key] = {
                    "mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "median": statistics.median(values),
                    "n": len(values),
                }
    return out


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} +- {sd:.3f}"


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}"


def targets(per_seed: dict[int, dict], shipped: str, debiased: bool) -> list[tuple[str, bool]]:
    """The quickstart's targets on the medians over seeds."""

    def median(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in per_seed.values())

    student_top1, student_disp = median(shipped, "top1"), median(shipped, "mean_abs_disparity")
    checks = [
        (
            f"student top-1 {student_top1:.3f} >= baseline {median('baseline', 'top1'):.3f} + 0.03",
            student_top1 >= median("baseline", "top1") + 0.03,
        ),
        (
            f"student top-1 {student_top1:.3f} >= teacher {median('teacher', 'top1'):.3f} - 0.02",
            student_top1 >= median("teacher", "top1") - 0.02,
        ),
        (
            f"student |disparity| {student_disp:.3f} <= 0.75 x teacher "
            f"{median('teacher', 'mean_abs_disparity'):.3f}",
            student_disp <= 0.75 * median("teacher", "mean_abs_disparity"),
        ),
    ]
    if debiased:
        plain_top1, plain_disp = median("distilled", "top1"), median("distilled", "mean_abs_disparity")
        checks += [
            (
                f"debiasing: |disparity| {student_disp:.3f} <= 0.5 x {plain_disp:.3f} without it",
                student_disp <= 0.5 * plain_disp,
            ),
            (
                f"debiasing: top-1 {student_top1:.3f} >= {plain_top1:.3f} without it - 0.005",
                student_top1 >= plain_top1 - 0.005,
            ),
        ]
    return checks


def plot(per_seed: dict[int, dict], names: list[str], path: Path) -> Path:
    """Top-1 against mean |disparity|: every seed as a dot, each model's mean as a larger mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekd.card.plots import save_figure

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for k, name in enumerate(names):
        colour = f"C{k % 10}"
        xs = [r[name]["mean_abs_disparity"] for r in per_seed.values()]
        ys = [r[name]["top1"] for r in per_seed.values()]
        ax.scatter(xs, ys, color=colour, alpha=0.35, s=18)
        ax.scatter(
            [statistics.fmean(xs)],
            [statistics.fmean(ys)],
            color=colour,
            s=90,
            marker="*" if name == "teacher" else "s" if name == "baseline" else "o",
            edgecolors="black",
            label=name,
        )
    ax.set_xlabel("mean |per-class recall disparity| (lower is fairer)")
    ax.set_ylabel("top-1 accuracy (balanced test split)")
    ax.set_title(f"{len(per_seed)} training seeds: each dot a seed, large marks the means")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for every model (repeatable)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=KEY=VALUE[;KEY=VALUE...]: one more student (repeatable)",
    )
    parser.add_argument(
        "--only-variants",
        action="store_true",
        help="train the --variant students only, not distilled/debiased",
    )
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once")
    parser.add_argument("--out", default="runs/seeds-bench")
    parser.add_argument("--plot", type=Path, help="also draw top-1 against |disparity| (PNG)")
    parser.add_argument(
        "--result", help="results file name under benchmarks/results (default: seeds_<recipe name>)"
    )
    args = parser.parse_args()

    from edgekd.errors import EdgeKDError
    from edgekd.recipe import load_recipe

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        recipe = load_recipe(args.recipe, tuple(args.overrides))
    except (ValueError, EdgeKDError) as err:
        raise SystemExit(f"error: {err}") from None
    debiased = recipe.debias.active
    variants: dict[str, list[str]] = {}
    if not args.only_variants:
        variants["distilled"] = ["debias.method=none", "debias.reweigh=false"]
        if debiased:
            variants["debiased"] = []
    variants.update(parse_variant(v) for v in args.variant)
    if not variants:
        raise SystemExit("error: --only-variants needs at least one --variant")
    import os

    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    print(
        f"{args.recipe}: seeds {seeds}, students {list(variants)}, {args.jobs} job(s) x "
        f"{threads} thread(s); logs in {args.out}/{recipe.name}/seed-*/log.txt",
        flush=True,
    )
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {
            seed: pool.submit(run_seed, args.recipe, args.overrides, variants, seed, args.out, threads)
            for seed in seeds
        }
        per_seed = {seed: future.result() for seed, future in futures.items()}
    names = [*ROLES, *variants]
    names += [n for n in next(iter(per_seed.values())) if n not in names]  # variants' own teachers
    print("\n".join(summarise(per_seed, names)))
    seconds = time.perf_counter() - started
    print(f"\n{seconds:.0f} s for {len(seeds)} seeds")
    path = write_result(
        args.result or f"seeds_{recipe.name}",
        {
            "recipe": args.recipe,
            "overrides": args.overrides,
            "variants": variants,
            "jobs": args.jobs,
            "threads_per_job": threads,
            "seconds": round(seconds, 1),
            "summary": summary(per_seed, names),
            "per_seed": {str(seed): results for seed, results in per_seed.items()},
        },
    )
    print(f"results: {path}")
    if args.plot:
        print(f"plot: {plot(per_seed, names, args.plot)}")
    if not args.only_variants:
        shipped = "debiased" if debiased else "distilled"
        print(f"\nThe quickstart's targets on the medians (shipped student: {shipped}):")
        for text, ok in targets(per_seed, shipped, debiased):
            print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
