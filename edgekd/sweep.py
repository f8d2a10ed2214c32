"""``edgekd sweep``: one build per grid point, sharing the teacher and the baseline.

    edgekd sweep recipes/quickstart.yaml --grid debias.lambda=0,0.5,1

Every point is the recipe with ``--set KEY=VALUE`` for its grid values and its own release
name, ``<name>-<point>`` (:func:`point_name`, e.g. ``tiny-distill.temperature-8``), so each
point's bundle, manifest, card and tarball (``<name>-<point>-<version>.tar.gz``) say which point
it is and two points' tarballs never share a file name. Any point is reproducible alone with
``edgekd build RECIPE --set KEY=VALUE`` (the same models and metrics under the recipe's own
name; add ``--set name=<point name>`` for the same release name). Points run in order into
``runs/<name>/sweep/<point>/``; the teacher, baseline and teacher-outputs stages live in the
main run ``runs/<name>/stages/`` and are trained once. A point whose bundle already holds the
card of the same resolved recipe is skipped, so a re-run after an interruption picks up where it
stopped. The results go to ``runs/<name>/sweep/<swept keys>/results.csv`` with the plots:
accuracy against mean |disparity| with the Pareto front marked and the teacher and the baseline
drawn as references, and each metric against each swept key. A debiased student's row also has
the adversary's accuracy next to the accuracy its criterion leaves it without a leak
(:func:`edgekd.debias.adversarial.adversary_reference`). Each point's top-1 and mean |disparity|
carry the bootstrap confidence interval of its card (:mod:`edgekd.fairness.bootstrap`): in the
table as ``value [low, high]``, in the CSV as ``<metric>_low`` and ``<metric>_high`` columns for
every metric with an interval, and as error bars in the plots.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
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

__all__ = [
    "parse_grid",
    "grid_points",
    "point_name",
    "pareto_front",
    "run_sweep",
    "SweepResult",
    "format_sweep_table",
    "write_sweep_plots",
    "TABLE_INTERVALS",
    "point_recipe",
    "finished_card",
    "result_row",
    "write_results_csv",
    "point_folder",
]

TABLE_INTERVALS = ("top1", "mean_abs_disparity")
"""The metrics whose interval the terminal table shows (the plot's axes); the CSV has them all."""
MAX_NAME = 100  # a recipe's (and release's) name


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list]:
    """``["debias.lambda=0,0.5"]`` -> ``{"debias.lambda": [0, 0.5]}`` (values parsed as YAML)."""
    if not items:
        raise EdgeKDError("--grid: give at least one KEY=V1,V2,... (e.g. debias.lambda=0,0.5,1)")
    grid: dict[str, list] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise EdgeKDError(
                f"--grid {item!r}: expected KEY=V1,V2,... with a dotted key, e.g. debias.lambda=0,0.5,1"
            )
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
            for j, (acc_j, disp_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def point_name(base: str, point: dict) -> str:
    """A grid point's release name: the recipe's ``base`` name, then each key and value, with
    any character a release name cannot hold replaced by ``-``; where that is over 100
    characters, ``base`` and a hash of the point instead.

    >>> point_name("tiny", {"distill.temperature": 8, "debias.lambda": 0.5})
    'tiny-distill.temperature-8_debias.lambda-0.5'
    """
    slug = "_".join(f"{k}-{_text(v)}" for k, v in point.items())
    name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{base}-{slug}")
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(_slug(point).encode()).hexdigest()[:12]
        name = f"{base[: MAX_NAME - 1 - len(digest)]}-{digest}"
    return name


def point_folder(point: dict) -> str:
    """A point's folder name: ``KEY=VALUE,...``, or a hash of it where that is over 100
    characters (a trial's unrounded floats)."""
    slug = _slug(point)
    return slug if len(slug) <= MAX_NAME else f"p-{hashlib.sha256(slug.encode()).hexdigest()[:16]}"


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


def run_sweep(
    recipe_path: str | Path,
    grid_items: list[str] | tuple[str, ...],
    *,
    out: str | Path = "runs",
    overrides: tuple[str, ...] = (),
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Build every grid point (see the module doc), ``jobs`` at once
    (:class:`edgekd.jobs.BuildPool`), and write the table, CSV and plots."""
    from edgekd.jobs import BuildPool, PointBuild, check_jobs, check_shared

    check_jobs(jobs)
    grid = parse_grid(grid_items)
    base = load_recipe(recipe_path, overrides)
    points = grid_points(grid)
    names = [point.get("name") if "name" in point else point_name(base.name, point) for point in points]
    if len(set(names)) < len(names):  # values that differ only in characters a name cannot hold
        names = [f"{name[: MAX_NAME - 4]}-p{n:02d}" for n, name in enumerate(names, start=1)]
    # Validate every point before training anything: a bad value must not stop a sweep midway.
    recipes = [
        point_recipe(recipe_path, overrides, point, name, option="--grid")
        for point, name in zip(points, names)
    ]
    check_shared(recipes, jobs, option="--grid")
    run_dir = Path(out) / base.name
    sweep_dir = run_dir / "sweep"
    cards: list[dict | None] = []
    todo: list[int] = []
    for n, (point, recipe) in enumerate(zip(points, recipes)):
        cards.append(finished_card(sweep_dir / point_folder(point), recipe))
        if cards[-1] is not None:
            log(f"sweep {n + 1}/{len(points)} {_slug(point)}: finished earlier, skipped")
        else:
            todo.append(n)
    builds = [
        PointBuild(recipes[n], sweep_dir / point_folder(points[n]), point_folder(points[n])) for n in todo
    ]
    if builds:

        def started(k: int) -> None:
            n = todo[k]
            log(f"sweep {n + 1}/{len(points)} {_slug(points[n])}: release {recipes[n].name}")

        with BuildPool(jobs, out=Path(out), shared_dir=run_dir, log=log) as pool:
            for k, outcome in pool.run_all(builds, started=started):
                if outcome.error is not None:
                    raise EdgeKDError(f"sweep point {_slug(points[todo[k]])}: {outcome.error}")
                cards[todo[k]] = outcome.card
    rows = [result_row(point, card, sweep_dir / point_folder(point)) for point, card in zip(points, cards)]
    report_dir = sweep_dir / "+".join(grid)  # one report per set of swept keys
    csv_path = write_results_csv(report_dir / "results.csv", rows, list(grid))
    plots = write_sweep_plots(rows, list(grid), report_dir)
    return SweepResult(sweep_dir=sweep_dir, rows=rows, keys=list(grid), csv_path=csv_path, plots=plots)


def point_recipe(recipe_path, overrides, point: dict, name: str, *, option: str) -> Recipe:
    """The recipe of one point: the recipe file, ``overrides``, then the point's values and its
    release ``name``; a bad value is one line naming the point (``option``: the flag it came
    from)."""
    extra = [f"{k}={_text(v)}" for k, v in point.items()]
    named = [] if "name" in point else [f"name={json.dumps(name)}"]  # quoted: always a string
    try:
        return load_recipe(recipe_path, tuple(overrides) + tuple(extra) + tuple(named))
    except EdgeKDError as err:
        first = str(err).splitlines()[0]
        raise EdgeKDError(f"{option} point {', '.join(extra)}: {first}") from None


def finished_card(point_dir: Path, recipe: Recipe) -> dict | None:
    """The card of ``point_dir``'s bundle when it was built from ``recipe``, else None."""
    try:
        card = load_card(point_dir / "bundle")
    except EdgeKDError:
        return None
    if card.get("provenance", {}).get("recipe_sha256") != recipe.sha256():
        return None
    return card


REFERENCES = ("teacher", "baseline")
# the artifacts whose test-set prediction agreement with the student each row reports: overall,
# and in the (class, group) cell where it is lowest (its value, and the cell's name)
AGREEMENT_OF = ("onnx", "onnx_int8", "onnx_int8_trt", "onnx_fp16")
EXTRA_COLUMNS = {
    "adversary_top1": "adversary acc.",
    "adversary_reference": "no-leak ref.",
    **{
        f"{ref}_{key}": f"{ref} {label}"
        for ref in REFERENCES
        for key, label in (("top1", "top-1"), ("mean_abs_disparity", "|disp|"))
    },
    **{
        key: label
        for name in AGREEMENT_OF
        for key, label in (
            (f"{name}_agreement", f"{name} agreement"),
            (f"{name}_worst_cell_agreement", f"{name} worst cell"),
            (f"{name}_worst_cell", f"{name} worst cell name"),
        )
    },
}


def _intervals(entry: dict) -> dict:
    """``<metric>_low`` and ``<metric>_high`` of a card's model entry, for every metric of the
    metric table with an interval (None where the card has none)."""
    ci = entry.get("ci") or {}
    out = {}
    for metric in METRICS.values():
        if metric.interval:
            bounds = ci.get(metric.key) if isinstance(ci.get(metric.key), dict) else {}
            out[f"{metric.key}_low"] = bounds.get("low")
            out[f"{metric.key}_high"] = bounds.get("high")
    return out


def _interval_columns() -> list[str]:
    return [f"{m.key}_{end}" for m in METRICS.values() if m.interval for end in ("low", "high")]


def result_row(point: dict, card: dict, point_dir: Path) -> dict:
    """A results row: the point's values, the distilled student's metrics with their
    intervals, the adversary, the references, each artifact's agreement and the bundle."""
    from edgekd.paths import release_name

    student = card["models"]["student"]
    m = student["metrics"]
    adversary = ((card.get("debias") or {}).get("epochs") or {}).get("student") or [{}]
    references = {
        f"{ref}_{key}": card["models"][ref]["metrics"].get(key)
        for ref in REFERENCES
        if ref in card["models"]
        for key in ("top1", "mean_abs_disparity")
    }
    agreements = {}
    for name in AGREEMENT_OF:
        if name in card["models"]:
            drift = card["models"][name].get("vs_student") or {}
            worst = drift.get("worst_cell_agreement") or {}
            agreements.update(
                {
                    f"{name}_agreement": drift.get("prediction_agreement"),
                    f"{name}_worst_cell_agreement": worst.get("agreement"),
                    f"{name}_worst_cell": f"{worst['class']} / {worst['group']}" if worst else None,
                }
            )
    release = release_name(card["name"], card["version"], listed_in=point_dir / "bundle" / "card.json")
    return {
        **point,
        **{metric.key: metric.read(m) for metric in METRICS.values()},
        **_intervals(student),
        "ci_level": (student.get("ci") or {}).get("level"),
        "adversary_top1": adversary[-1].get("adversary_top1"),
        "adversary_reference": adversary[-1].get("adversary_reference"),
        **references,
        **agreements,
        "bundle": str(point_dir / "bundle"),
        "tarball": str(point_dir / f"{release}.tar.gz"),
    }


def write_results_csv(path: Path, rows: list[dict], keys: list[str], extra: tuple[str, ...] = ()) -> Path:
    """The results table as CSV: ``keys``, every metric and interval, the extra columns,
    then ``extra`` (tune's trial number and state) and the bundle."""
    import io

    from edgekd.files import write_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer,
        fieldnames=keys
        + METRICS.names()
        + _interval_columns()
        + ["ci_level"]
        + list(EXTRA_COLUMNS)
        + list(extra)
        + ["bundle", "tarball"],
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _text(row[k]) if k in keys else row.get(k) for k in writer.fieldnames})
    write_atomic(path, buffer.getvalue())
    return path


def _with_interval(row: dict, key: str) -> float | str | None:
    """``0.9612 [0.9475, 0.9738]``: the value and its interval, or the bare value without one."""
    value, low, high = row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high")
    if value is None or low is None or high is None:
        return value
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def format_sweep_table(rows: list[dict], keys: list[str], *, front: list[int] | None = None) -> str:
    """One line per grid point: its values, the student's metrics (top-1 and mean |disparity|
    with their bootstrap interval, ``value [low, high]``), the adversary and agreement columns
    some point has, and whether it is on the Pareto front (``front``: the rows on it; default
    the accuracy-disparity front); the references on a line below."""
    optional = {
        k: EXTRA_COLUMNS[k]
        for k in (
            "adversary_top1",
            "adversary_reference",
            "onnx_int8_agreement",
            "onnx_int8_worst_cell_agreement",
            "onnx_int8_trt_agreement",
            "onnx_int8_trt_worst_cell_agreement",
        )
        if any(r.get(k) is not None for r in rows)
    }
    levels = {r.get("ci_level") for r in rows if r.get("ci_level") is not None}
    level = f"{next(iter(levels)):.0%} CI" if len(levels) == 1 else "CI"
    headers = {
        **{k: k for k in keys},
        **{
            m.key: f"{m.label} [{level}]"
            if m.key in TABLE_INTERVALS and any(r.get(f"{m.key}_low") is not None for r in rows)
            else m.label
            for m in METRICS.values()
        },
        **optional,
        "pareto": "Pareto",
    }
    front = set(
        pareto_front([(r["top1"], r["mean_abs_disparity"] or 0.0) for r in rows]) if front is None else front
    )
    shown = [
        {
            **{k: _text(r[k]) for k in keys},
            **{
                m.key: _with_interval(r, m.key) if m.key in TABLE_INTERVALS else r[m.key]
                for m in METRICS.values()
            },
            **{k: _with_cell(r, k) for k in optional},
            "pareto": "*" if i in front else "",
        }
        for i, r in enumerate(rows)
    ]
    table = format_table(shown, headers)
    references = _references(rows)
    if references:
        table += "\n" + "; ".join(
            f"{name}: top-1 {acc:.4f}, mean |disparity| {disp:.4f}" for name, acc, disp in references
        )
    return table


def _with_cell(row: dict, key: str) -> float | str | None:
    """A worst-cell agreement with its cell, ``0.9400 (square / warm)``; other values as they are."""
    value, cell = (
        row.get(key),
        row.get(key.removesuffix("_agreement")) if key.endswith("_worst_cell_agreement") else None,
    )
    return f"{value:.4f} ({cell})" if value is not None and cell else value


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


def _error_bars(rows: list[dict], key: str, values: list[float]) -> list[list[float]]:
    """matplotlib's asymmetric ``[[below...], [above...]]`` from each row's interval (0 where a
    row has none)."""
    below, above = [], []
    for r, value in zip(rows, values):
        low, high = r.get(f"{key}_low"), r.get(f"{key}_high")
        ok = None not in (low, high) and value == value  # a NaN value has no bar
        below.append(max(0.0, value - low) if ok else 0.0)
        above.append(max(0.0, high - value) if ok else 0.0)
    return [below, above]


def write_sweep_plots(
    rows: list[dict],
    keys: list[str],
    out_dir: Path,
    *,
    front: list[int] | None = None,
    each: str = "grid point",
    labels: list[str] | None = None,
) -> list[Path]:
    """``accuracy_vs_disparity.png`` (Pareto front marked) and ``metrics_vs_<key>.png``, each
    point with the error bars of its bootstrap intervals. ``front``: the rows to mark as the
    front (default: the accuracy-disparity front of :func:`pareto_front`); ``each``: what a
    row is, for the legend; ``labels``: each point's label in the plot (default its values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    acc = [r["top1"] for r in rows]
    disp = [r["mean_abs_disparity"] or 0.0 for r in rows]
    front = pareto_front(list(zip(acc, disp))) if front is None else front
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(
        disp,
        acc,
        xerr=_error_bars(rows, "mean_abs_disparity", disp),
        yerr=_error_bars(rows, "top1", acc),
        fmt="o",
        color="tab:blue",
        ecolor="tab:blue",
        elinewidth=1,
        capsize=3,
        alpha=0.8,
        label=f"distilled student, per {each} (bootstrap CI)",
    )
    ordered = sorted(front, key=lambda i: disp[i])
    ax.plot(
        [disp[i] for i in ordered], [acc[i] for i in ordered], "o-", color="tab:red", label="Pareto front"
    )
    styles = {"teacher": ("*", "black", 140), "baseline": ("s", "tab:gray", 60)}
    labelled = set()
    for name, ref_acc, ref_disp in _references(rows):
        marker, colour, size = styles[name]
        ax.scatter(
            [ref_disp],
            [ref_acc],
            marker=marker,
            color=colour,
            s=size,
            zorder=3,
            label=None
            if name in labelled
            else f"{name} (trained without distillation)"
            if name == "baseline"
            else name,
        )
        labelled.add(name)
    if labels is None:
        labels = [",".join(_text(r[k]) for k in keys) for r in rows]
    for label, x, y in zip(labels, disp, acc):
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
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
            ys = [r[metric.key] if r[metric.key] is not None else float("nan") for r in rows]
            ax.errorbar(xs, ys, yerr=_error_bars(rows, metric.key, ys), fmt="o", capsize=3)
            ax.set_xlabel(key)
            ax.set_title(metric.title)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"metrics_vs_{key}.png"))
        plt.close(fig)
    return paths
