"""``edgekd sweep``: one build per grid point, sharing the teacher and the baseline.

    edgekd sweep recipes/quickstart.yaml --grid debias.lambda=0,0.5,1

Every point is the recipe with ``--set KEY=VALUE`` for its grid values, so any point is
reproducible alone with ``edgekd build RECIPE --set KEY=VALUE``. Points run in order into
``runs/<name>/sweep/<point>/``; the teacher, baseline and teacher-outputs stages live in the
main run ``runs/<name>/stages/`` and are trained once. A point whose bundle already holds the
card of the same resolved recipe is skipped, so a re-run after an interruption picks up where it
stopped. The results go to ``runs/<name>/sweep/<swept keys>/results.csv`` with the plots:
accuracy against mean |disparity| with the Pareto front marked and the teacher and the baseline
drawn as references, and each metric against each swept key. A debiased student's row also has
the adversary's accuracy next to the accuracy its criterion leaves it without a leak
(:func:`edgekd.debias.adversarial.adversary_reference`).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgekd.card.io import load_card
from edgekd.card.plots import save_figure
from edgekd.card.table import format_table
from edgekd.errors import EdgeKDError
from edgekd.fairness.metric_table import METRICS
from edgekd.recipe import Recipe, load_recipe
from edgekd.yaml_bounded import load_yaml

__all__ = ["parse_grid", "grid_points", "pareto_front", "run_sweep", "SweepResult"]



def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list]:
    """``["debias.lambda=0,0.5"]`` -> ``{"debias.lambda": [0, 0.5]}`` (values parsed as YAML)."""
    if not items:
        raise EdgeKDError("--grid: give at least one KEY=V1,V2,... (e.g. debias.lambda=0,0.5,1)")
    grid: dict[str, list] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise EdgeKDError(f"--grid {item!r}: expected KEY=V1,V2,... with a dotted key, "
                              "e.g. debias.lambda=0,0.5,1")
        if key in grid:
            raise EdgeKDError(f"--grid {key}: given twice; list all its values in one --grid")
        raw_values = [v.strip() for v in text.split(",")]
        if any(not v for v in raw_values):
            raise EdgeKDError(f"--grid {key}: empty value in {text!r}; separate values with commas")
        values = []
        for raw in raw_values:
            try:
                values.append(load_yaml(raw, f"--grid {key}"))
            except yaml.YAMLError:
                raise EdgeKDError(f"--grid {key}: value {raw!r} is not a valid YAML value") from None
        grid[key] = values
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in order (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both accuracy (higher) and disparity
    (lower): ``(top1, mean_abs_disparity)`` pairs."""
    front = []
    for i, (acc_i, disp_i) in enumerate(points):
        dominated = any(
            acc_j >= acc_i and disp_j <= disp_i and (acc_j > acc_i or disp_j < disp_i)
            for j, (acc_j, disp_j) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _slug(point: dict) -> str:
    return ",".join(f"{k}={_text(v)}" for k, v in point.items()).replace("/", "_")


def _text(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


@dataclass
class SweepResult:
    """The sweep's folder, one row per grid point (its values, every metric of the metric table
    for the distilled student, and its bundle), the swept keys, the CSV and the plots."""

    sweep_dir: Path
    rows: list[dict]
    keys: list[str]
    csv_path: Path
    plots: list[Path]


def run_sweep(recipe_path: str | Path, grid_items: list[str] | tuple[str, ...], *,
              out: str | Path = "runs", overrides: tuple[str, ...] = (),
              log: Callable[[str], None] = print) -> SweepResult:
    """Build every grid point (see the module doc) and write the table, CSV and plots."""
    from edgekd.pipeline import build_recipe

    grid = parse_grid(grid_items)
    base = load_recipe(recipe_path, overrides)
    points = grid_points(grid)
    # Validate every point before training anything: a bad value must not stop a sweep midway.
    recipes = [_point_recipe_with(recipe_path, overrides, point) for point in points]
    run_dir = Path(out) / base.name
    sweep_dir = run_dir / "sweep"
    rows = []
    for n, (point, recipe) in enumerate(zip(points, recipes), start=1):
        point_dir = sweep_dir / _slug(point)
        card = _finished_card(point_dir, recipe)
        if card is not None:
            log(f"sweep {n}/{len(points)} {_slug(point)}: finished earlier, skipped")
        else:
            log(f"sweep {n}/{len(points)} {_slug(point)}")
            result = build_recipe(recipe, out=out, log=log, run_dir=point_dir, shared_dir=run_dir)
            card = result.card
        rows.append(_row(point, card, point_dir))
    report_dir = sweep_dir / "+".join(grid)  # one report per set of swept keys
    csv_path = _write_csv(report_dir / "results.csv", rows, list(grid))
    plots = write_sweep_plots(rows, list(grid), report_dir)
    return SweepResult(sweep_dir=sweep_dir, rows=rows, keys=list(grid), csv_path=csv_path, plots=plots)


def _point_recipe_with(recipe_path, overrides, point: dict) -> Recipe:
    extra = [f"{k}={_text(v)}" for k, v in point.items()]
    try:
        return load_recipe(recipe_path, tuple(overrides) + tuple(extra))
    except EdgeKDError as err:
        first = str(err).splitlines()[0]
        raise EdgeKDError(f"--grid point {', '.join(extra)}: {first}") from None


def _finished_card(point_dir: Path, recipe: Recipe) -> dict | None:
    try:
        card = load_card(point_dir / "bundle")
    except EdgeKDError:
        return None
    if card.get("provenance", {}).get("recipe_sha256") != recipe.sha256():
        return None
    return card


REFERENCES = ("teacher", "baseline")
# the artifacts whose test-set prediction agreement with the student each row reports
AGREEMENT_OF = ("onnx", "onnx_int8", "onnx_int8_trt", "onnx_fp16")
EXTRA_COLUMNS = {"adversary_top1": "adversary acc.", "adversary_reference": "no-leak ref.",
                 **{f"{ref}_{key}": f"{ref} {label}" for ref in REFERENCES
                    for key, label in (("top1", "top-1"), ("mean_abs_disparity", "|disp|"))},
                 **{f"{name}_agreement": f"{name} agreement" for name in AGREEMENT_OF}}


def _row(point: dict, card: dict, point_dir: Path) -> dict:
    m = card["models"]["student"]["metrics"]
    adversary = ((card.get("debias") or {}).get("epochs") or {}).get("student") or [{}]
    references = {f"{ref}_{key}": card["models"][ref]["metrics"].get(key)
                  for ref in REFERENCES if ref in card["models"]
                  for key in ("top1", "mean_abs_disparity")}
    agreements = {f"{name}_agreement": (card["models"][name].get("vs_student") or {}).get(
        "prediction_agreement") for name in AGREEMENT_OF if name in card["models"]}
    return {**point, **{metric.key: metric.read(m) for metric in METRICS.values()},
            "adversary_top1": adversary[-1].get("adversary_top1"),
            "adversary_reference": adversary[-1].get("adversary_reference"),
            **references, **agreements, "bundle": str(point_dir / "bundle")}


def _write_csv(path: Path, rows: list[dict], keys: list[str]) -> Path:
    import io

    from edgekd.files import write_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys + METRICS.names() + list(EXTRA_COLUMNS) + ["bundle"])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _text(row[k]) if k in keys else row.get(k) for k in writer.fieldnames})
    write_atomic(path, buffer.getvalue())
    return path


def format_sweep_table(rows: list[dict], keys: list[str]) -> str:
    optional = {k: EXTRA_COLUMNS[k] for k in ("adversary_top1", "adversary_reference",
                                              "onnx_int8_agreement", "onnx_int8_trt_agreement")
                if any(r.get(k) is not None for r in rows)}
    headers = {**{k: k for k in keys}, **{m.key: m.label for m in METRICS.values()}, **optional,
               "pareto": "Pareto"}
    front = set(pareto_front([(r["top1"], r["mean_abs_disparity"] or 0.0) for r in rows]))
    shown = [{**{k: _text(r[k]) for k in keys}, **{m.key: r[m.key] for m in METRICS.values()},
              **{k: r.get(k) for k in optional}, "pareto": "*" if i in front else ""}
             for i, r in enumerate(rows)]
    table = format_table(shown, headers)
    references = _references(rows)
    if references:
        table += "\n" + "; ".join(f"{name}: top-1 {acc:.4f}, mean |disparity| {disp:.4f}"
                                   for name, acc, disp in references)
    return table


def _references(rows: list[dict]) -> list[tuple[str, float, float]]:
    """The teacher's and the baseline's (top-1, mean |disparity|), once per distinct value (a
    grid over a teacher or student key gives each point its own)."""
    seen = []
    for ref in REFERENCES:
        for r in rows:
            pair = (r.get(f"{ref}_top1"), r.get(f"{ref}_mean_abs_disparity"))
            if None not in pair and (ref, *pair) not in seen:
                seen.append((ref, *pair))
    return seen


def write_sweep_plots(rows: list[dict], keys: list[str], out_dir: Path) -> list[Path]:
    """``accuracy_vs_disparity.png`` (Pareto front marked) and ``<metric>_vs_<key>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    acc = [r["top1"] for r in rows]
    disp = [r["mean_abs_disparity"] or 0.0 for r in rows]
    front = pareto_front(list(zip(acc, disp)))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(disp, acc, color="tab:blue", label="distilled student, per grid point")
    ordered = sorted(front, key=lambda i: disp[i])
    ax.plot([disp[i] for i in ordered], [acc[i] for i in ordered], "o-", color="tab:red",
            label="Pareto front")
    styles = {"teacher": ("*", "black", 140), "baseline": ("s", "tab:gray", 60)}
    labelled = set()
    for name, ref_acc, ref_disp in _references(rows):
        marker, colour, size = styles[name]
        ax.scatter([ref_disp], [ref_acc], marker=marker, color=colour, s=size, zorder=3,
                   label=None if name in labelled else f"{name} (trained without distillation)"
                   if name == "baseline" else name)
        labelled.add(name)
    for r, x, y in zip(rows, disp, acc):
        ax.annotate(",".join(_text(r[k]) for k in keys), (x, y), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("mean |per-class recall disparity| (lower is fairer)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("Distilled students against the teacher and the baseline")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / "accuracy_vs_disparity.png"))
    plt.close(fig)
    for key in keys:
        numeric = all(isinstance(r[key], (int, float)) and not isinstance(r[key], bool) for r in rows)
        xs = [r[key] if numeric else _text(r[key]) for r in rows]
        metrics = METRICS.values()
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            ax.plot(xs, [r[metric.key] if r[metric.key] is not None else float("nan") for r in rows], "o")
            ax.set_xlabel(key)
            ax.set_title(metric.title)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"metrics_vs_{key}.png"))
        plt.close(fig)
    return paths
