"""Render the docs' results pages from the files the benchmarks wrote (``benchmarks/results``).

    python scripts/render_results.py [--results benchmarks/results] [--out DIR]

Each ``<name>.json`` (written by ``benchmarks/_results.py``: the numbers with the date, commit,
machine and command of the run) becomes ``results/<name>.md``: what the benchmark compares (its
script's docstring), where and when it ran, and its tables, formatted from the file and never
typed. ``build_time_<recipe>.json`` files make one table on ``results/index.md``, which lists
every file. The docs build
(``scripts/mkdocs_hooks.py``) calls :func:`render_pages` on every build; ``--out`` writes the
pages to a folder to read them without a build.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "load_results",
    "render_pages",
    "render_result",
    "build_time_table",
    "results_list",
    "table",
    "fmt",
]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


# ------------------------------------------------------------------------------------- text
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def rst_to_markdown(text: str) -> str:
    """Docstring markup as Markdown: ``x`` to `x`, :func:`a.b` to `a.b`, :func:`~a.b` to `b`."""
    text = _ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    return text.replace("``", "`")


# ------------------------------------------------------------------------------------ cells
def fmt(value) -> str:
    """A value as a table cell: floats to 4 significant digits (3 decimals below 10 at least),
    None as a dash, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 10:
            return f"{value:.2f}"
        if magnitude >= 0.001:
            return f"{value:.4f}".rstrip("0").rstrip(".") if magnitude < 1 else f"{value:.3f}"
        return f"{value:.2e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
    return str(value)


def _cell(value) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict], columns: dict[str, str] | None = None) -> str:
    """A Markdown table of ``rows``; ``columns`` maps keys to headers (default: every key, in
    the order first seen, underscores as spaces)."""
    if not rows:
        return "(no rows)\n"
    if columns is None:
        columns = {}
        for row in rows:
            for key in row:
                columns.setdefault(key, key.replace("_", " "))
    numeric = {
        k: all(
            isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
            for r in rows
            if r.get(k) is not None
        )
        for k in columns
    }
    lines = [
        "| " + " | ".join(columns.values()) + " |",
        "| " + " | ".join("---:" if numeric[k] else "---" for k in columns) + " |",
    ]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _pm(stats: dict | None) -> str:
    if not stats:
        return "-"
    return f"{fmt(stats['mean'])} ± {fmt(stats['sd'])}" if stats.get("n", 1) > 1 else fmt(stats["mean"])


# ------------------------------------------------------------------------------ renderers
def _seeds(result: dict) -> str:
    summary = result["summary"]
    rows = [
        {
            "model": name,
            "seeds": (s.get("top1") or {}).get("n"),
            "top1": _pm(s.get("top1")),
            "top1_median": (s.get("top1") or {}).get("median"),
            "disparity": _pm(s.get("mean_abs_disparity")),
            "disparity_median": (s.get("mean_abs_disparity") or {}).get("median"),
            "adversary": _pm(s.get("adversary_top1")) if s.get("adversary_top1") else None,
            "reference": _pm(s.get("adversary_reference")) if s.get("adversary_reference") else None,
        }
        for name, s in summary.items()
    ]
    out = [
        "Over the training seeds (mean ± sample sd, and the median), on the test split:",
        "",
        table(
            rows,
            {
                "model": "model",
                "seeds": "seeds",
                "top1": "top-1",
                "top1_median": "median",
                "disparity": "mean \\|disparity\\|",
                "disparity_median": "median",
                "adversary": "adversary accuracy",
                "reference": "its no-leak reference",
            },
        ),
    ]
    variants = result.get("variants") or {}
    if variants:
        out += [
            "The students, as `--set` overrides of the recipe:",
            "",
            table(
                [
                    {"student": k, "overrides": " ".join(f"`{o}`" for o in v) or "(the recipe)"}
                    for k, v in variants.items()
                ]
            ),
        ]
    per_seed = result.get("per_seed") or {}
    if per_seed:
        names = list(summary)
        rows = [
            {
                "seed": seed,
                **{n: f"{fmt(r[n]['top1'])} / {fmt(r[n]['mean_abs_disparity'])}" for n in names if n in r},
            }
            for seed, r in per_seed.items()
        ]
        out += [
            "Per seed, top-1 / mean \\|disparity\\|:",
            "",
            table(rows, {"seed": "seed", **{n: n for n in names}}),
        ]
    return "\n".join(out)


def _int8_trt_bias(result: dict) -> str:
    changes = result.get("test_agreement_change") or []
    text = table(result["rows"])
    if changes:
        text += (
            f"\nChange in test agreement, float minus int32 biases, over {len(changes)} builds: "
            f"mean {fmt(sum(changes) / len(changes))}, min {fmt(min(changes))}, "
            f"max {fmt(max(changes))}.\n"
        )
    return text


def _bootstrap(result: dict) -> str:
    rows = [
        {"method": "vectorised (one `np.bincount` per resample)", "seconds": result["vectorised_s"]},
        {
            "method": f"fairlearn per resample (extrapolated from {result['naive_resamples_timed']})",
            "seconds": result["fairlearn_s_extrapolated"],
        },
    ]
    return (
        f"{result['resamples']} resamples of {result['images']} images, {result['classes']} "
        f"classes, {result['groups']} groups.\n\n"
        + table(rows)
        + f"\nfairlearn per resample / vectorised: x{fmt(result['ratio'])}\n"
    )


def _settings(keys: list[str], columns: dict[str, str] | None = None) -> Callable[[dict], str]:
    """A line of the run's settings, then the rows."""

    def render(result: dict) -> str:
        settings = ", ".join(f"{k.replace('_', ' ')} {fmt(result[k])}" for k in keys if k in result)
        extra = ""
        if "step_ms" in result:
            extra = f"A training step without augmentation: {fmt(result['step_ms'])} ms per batch.\n\n"
        if "cache_fill_seconds" in result:
            extra = f"Filling the cache once (teacher inference): {fmt(result['cache_fill_seconds'])} s.\n\n"
        return f"Settings: {settings}.\n\n{extra}" + table(result.get("rows", []), columns)

    return render


def _data_cache(result: dict) -> str:
    second = result.get("second_data_stage") or {}
    return (
        f"{result['images']} images at {result['image_size']} px ({fmt(result['pixels_mb'])} MB of "
        f"uint8 pixels), subset {result['subset']}; importing torch, timm and onnxruntime alone: "
        f"peak {fmt(result['imports_peak_mb'])} MB.\n\n"
        + table(result["rows"])
        + f"\nA second data stage (cache read, every split read once): peak "
        f"{fmt(second.get('peak_mb'))} MB, {fmt(second.get('wall_s'))} s. The in-memory path on all "
        f"images: {fmt(result['in_memory_all_peak_mb'])} MB ({result['in_memory_all']}). Target "
        f"{fmt(result['target_mb'])} MB: {'met' if result['target_met'] else 'not met'}.\n"
    )


# Benchmark name (or prefix ending in "_") -> renderer of its tables. A file with no renderer
# gets its "rows" (when it has them) and its other values as a list.
RENDERERS: dict[str, Callable[[dict], str]] = {
    "seeds_": _seeds,
    "int8_trt_bias": _int8_trt_bias,
    "bootstrap": _bootstrap,
    "teacher_cache": _settings(
        ["teacher", "student", "images", "image_size", "batch_size", "threads", "repeats"]
    ),
    "augment": _settings(
        ["arch", "image_size", "batch_size", "threads"],
        {
            "augmentation": "augmentation",
            "per_image_ms": "ms per batch, image by image (what the loop does)",
            "per_image_ms_per_image": "ms per image",
            "vs_step": "x training step",
            "once_on_batch_ms": "ms per batch, one draw for all",
        },
    ),
    "train_step_": _settings(["arch", "batch_size", "threads", "steps", "repeats"]),
    "runtimes": _settings(["run", "input", "iterations", "rounds", "int8_file", "load_before", "load_after"]),
    "exporters": _settings(["run", "arch", "test_images", "opset", "dynamo_vs_torchscript_export_time"]),
    "data_cache": _data_cache,
}

ENVELOPE = ("benchmark", "date", "commit", "command", "machine")


def _generic(result: dict) -> str:
    rest = {k: v for k, v in result.items() if k not in ENVELOPE and k != "rows"}
    text = table(result["rows"]) if isinstance(result.get("rows"), list) else ""
    if rest:
        text += "\n" + "\n".join(f"- {k.replace('_', ' ')}: {_cell(v)}" for k, v in rest.items()) + "\n"
    return text


def renderer_for(name: str) -> Callable[[dict], str]:
    if name in RENDERERS:
        return RENDERERS[name]
    prefixes = [p for p in RENDERERS if p.endswith("_") and name.startswith(p)]
    return RENDERERS[max(prefixes, key=len)] if prefixes else _generic


# ------------------------------------------------------------------------------------ pages
def load_results(folder: Path = RESULTS) -> dict[str, dict]:
    """Every ``*.json`` results file of ``folder`` by name (none when the folder is absent).
    A file that is not a JSON object with the envelope's keys stops the docs build, naming it."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SystemExit(f"{path}: not a readable JSON results file ({err})") from None
        missing = [k for k in ("date", "command") if not isinstance(data, dict) or k not in data]
        if missing:
            raise SystemExit(
                f"{path}: a results file needs {', '.join(missing)} (benchmarks/_results.py "
                "write_result writes them)"
            )
        out[path.stem] = data
    return out


def _script_doc(command: str) -> str:
    """The module docstring of the benchmark script a command ran, as Markdown."""
    script = command.split()[0] if command else ""
    path = REPO / script
    if not script.endswith(".py") or not path.is_file():
        return ""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return fence_code(rst_to_markdown(doc))


def fence_code(text: str) -> str:
    """Indented lines (a docstring's usage lines) as fenced ``sh`` blocks, blank lines around."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        code = line.startswith("    ")
        if code and not fenced:
            if out and out[-1].strip():
                out.append("")
            out.append("```sh")
            fenced = True
        elif fenced and not code and line.strip():
            while out[-1] == "":
                out.pop()
            out += ["```", ""]
            fenced = False
        out.append(line[4:] if code else line)
    if fenced:
        while out[-1] == "":
            out.pop()
        out.append("```")
    return "\n".join(out)


def provenance(result: dict) -> str:
    machine = result.get("machine") or {}
    cpu = machine.get("cpu_model") or machine.get("processor") or "unknown CPU"
    where = f"{machine.get('cpus', '?')} cores of {cpu}, Python {machine.get('python', '?')}"
    if machine.get("load_1min") is not None:
        where += f", load average {machine['load_1min']:.2f} at the end"
    commit = result.get("commit") or "unknown"
    return (
        f"Measured {result['date']} at commit `{commit}` on {where}, by\n\n"
        f"```sh\npython {result['command']}\n```\n"
    )


def render_result(name: str, result: dict) -> str:
    """One results file as a page."""
    doc = _script_doc(result.get("command", ""))
    first, _, body = doc.partition("\n\n")
    lead = " ".join(first.split())
    parts = [
        f"# {name.replace('_', ' ')}",
        "",
        lead,
        "",
        f"Results file: `benchmarks/results/{name}.json`. " + provenance(result),
    ]
    machine = result.get("machine") or {}
    load, cpus = machine.get("load_1min"), machine.get("cpus")
    if isinstance(load, (int, float)) and isinstance(cpus, int) and load > cpus:
        parts += [
            '!!! warning "Measured on a busy machine"',
            f"    The load average was {load:.2f} on {cpus} cores when the run ended: other",
            "    processes shared the cores, so timings and their ratios are unreliable. Run the",
            "    command again on an idle machine to replace this file.",
            "",
        ]
    if body:
        parts += ["## What it measures", "", body, ""]
    parts += ["## Results", "", renderer_for(name)(result)]
    for key in ("note",):
        if result.get(key):
            parts += [f"Note from the run: {result[key]}", ""]
    return "\n".join(parts)


def _minutes(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def build_time_table(results: dict[str, dict]) -> str:
    """The shipped recipes' build times (``build_time_<recipe>.json``, written by
    ``benchmarks/bench_build_time.py``), or a line saying none has been measured."""
    rows = []
    for name, r in results.items():
        if not name.startswith("build_time_"):
            continue
        load = r.get("load_before", r.get("load"))
        machine = r.get("machine") or {}
        rows.append(
            {
                "recipe": f"[`{r.get('recipe', name[len('build_time_') :])}`]({name}.md)",
                "wall": _minutes(r.get("wall_seconds")),
                "cpu": _minutes(r.get("cpu_seconds")),
                "peak": r.get("peak_rss_mib"),
                "threads": r.get("threads"),
                "load": load[0] if isinstance(load, list) and load else load,
                "cores": machine.get("cpus"),
                "date": r.get("date"),
                "commit": r.get("commit"),
            }
        )
    if not rows:
        return (
            "No build time has been measured yet: `benchmarks/bench_build_time.py RECIPE` writes "
            "`benchmarks/results/build_time_<recipe>.json`, which adds a row here.\n"
        )
    return table(
        rows,
        {
            "recipe": "recipe",
            "wall": "wall time",
            "cpu": "CPU time",
            "peak": "peak MiB",
            "threads": "threads",
            "load": "load average before",
            "cores": "cores",
            "date": "date",
            "commit": "commit",
        },
    )


def results_list(results: dict[str, dict]) -> str:
    """One row per results file: its page, date, commit and command."""
    rows = [
        {
            "page": f"[{name}]({name}.md)",
            "date": r.get("date"),
            "commit": r.get("commit"),
            "command": f"`{r.get('command', '')}`",
        }
        for name, r in results.items()
    ]
    return table(rows) if rows else "No results file yet.\n"


def seeds_plot(result: dict) -> bytes | None:
    """Top-1 against mean |disparity| per seed and model, drawn from a seeds results file by the
    benchmark's own plot function; None without matplotlib (the page then has no plot)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    import tempfile

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_quickstart_seeds import plot

    with tempfile.TemporaryDirectory() as tmp:
        path = plot(result["per_seed"], list(result["summary"]), Path(tmp) / "seeds.png")
        return path.read_bytes()


def render_pages(folder: Path = RESULTS) -> dict[str, str | bytes]:
    """``results/<name>.md`` -> Markdown: one page per results file (and ``results/<name>.png``,
    the plot of a seeds study). The hand-written ``docs/results/index.md`` takes
    :func:`build_time_table` and :func:`results_list`."""
    pages: dict[str, str | bytes] = {}
    for name, result in load_results(folder).items():
        page = render_result(name, result)
        if name.startswith("seeds_") and result.get("per_seed"):
            png = seeds_plot(result)
            if png:
                pages[f"results/{name}.png"] = png
                page += (
                    f"\n![Top-1 against mean |disparity|: each dot a seed, large marks the means]"
                    f"({name}.png)\n"
                )
        pages[f"results/{name}.md"] = page
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, help="write the pages under this folder (else list them)")
    args = parser.parse_args()
    pages = render_pages(args.results)
    for page, content in pages.items():
        if args.out:
            target = args.out / page
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        print(
            f"{page}: {len(content)} {'bytes' if isinstance(content, bytes) else 'characters'}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
