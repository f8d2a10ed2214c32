"""The docs site's generated parts: the recipe reference covers every key of the recipe schema,
and the results pages are rendered from the files the benchmarks write."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import recipe_reference  # noqa: E402
import render_results  # noqa: E402

from edgekd.recipe import Recipe  # noqa: E402


def _schema_keys(model: type[BaseModel], path: str = "") -> set[tuple[str, str, str]]:
    """(section path, section class, key) of every field below ``model``, walked from the
    annotations alone (a union's members each count as a section at the same path)."""
    found = set()
    for name, field in model.model_fields.items():
        key = field.alias or name
        found.add((path, model.__name__, key))
        members = [
            a
            for a in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        for member in members:
            found |= _schema_keys(member, f"{path}.{key}" if path else key)
    return found


def test_recipe_reference_covers_every_key_of_the_recipe():
    expected = _schema_keys(Recipe)
    sections = recipe_reference.sections()
    documented = {(s.path, s.model.__name__, r.key) for s in sections for r in s.rows}
    # a tagged union's own key (data, distill) is a row of the parent; its members' keys are rows
    # of their sections
    assert expected - documented == set()
    assert documented - expected == set()
    # every choice of the data sources and distillation methods has its section
    from edgekd.data import DATA_SOURCES
    from edgekd.distill import METHOD_CONFIGS

    titles = {s.title for s in sections}
    assert {f"`data` (source: {n})" for n in DATA_SOURCES.names()} <= titles
    assert {f"`distill` (method: {n})" for n in METHOD_CONFIGS.names()} <= titles


def test_recipe_reference_rows_read_the_schema():
    page = recipe_reference.render()
    # default, constraints and description of card.alpha, straight from CardConfig
    assert (
        "| `alpha` | `0.05` | number (> 0.0, < 1.0) | false discovery rate of the class tests |"
        in page.split("## `card`\n", 1)[1].split("\n## ", 1)[0]
    )
    # a required key, a pattern, a Literal, a tagged union and a section's non-default defaults
    assert (
        "| `name` | required | text (at most 100 characters, matching `^[A-Za-z0-9][A-Za-z0-9._-]*$`) |"
        in page
    )
    assert "| `on_miss` | `fail` | one of `fail`, `warn` |" in page
    assert (
        "| `distill` | `{method: kd}` | a section chosen by `method`: adaptive, ctkd, kd, kdpp, rkd |" in page
    )
    assert "| `teacher` | `{arch: efficientnet_b3, epochs: 8}` | section: see `teacher` |" in page
    # every section heading once, every table well formed
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert len(headings) == len(set(headings)) == len(recipe_reference.sections())
    for line in page.splitlines():
        if line.startswith("| `"):
            assert len(re.split(r"(?<!\\)\|", line)) == 6, line  # 4 cells, unescaped pipes


def _write_result(tmp_path: Path, name: str, data: dict, *argv: str) -> Path:
    """A results file written by the benchmarks' own writer, as a benchmark would."""
    code = (
        "import sys, json; sys.path.insert(0, 'benchmarks'); from _results import write_result; "
        f"sys.argv = {['benchmarks/bench_teacher_cache.py', *argv]!r}; "
        f"print(write_result({name!r}, json.loads(sys.stdin.read())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "EDGEKD_BENCH_RESULTS": str(tmp_path)},
        check=True,
    )
    return Path(out.stdout.strip())


def test_results_file_renders_into_its_page(tmp_path):
    path = _write_result(
        tmp_path,
        "teacher_cache",
        {
            "teacher": "efficientnet_b3",
            "student": "efficientnet_b0",
            "images": 1280,
            "threads": 1,
            "rows": [
                {"epoch": "baseline epoch (CE)", "seconds": 3.68, "vs_baseline": 1.0},
                {"epoch": "KD epoch, warm teacher cache", "seconds": 3.3125, "vs_baseline": 0.9001},
            ],
            "cache_fill_seconds": 2.67,
        },
        "--images",
        "1280",
    )
    assert path == tmp_path / "teacher_cache.json"
    record = json.loads(path.read_text())
    assert record["command"] == "benchmarks/bench_teacher_cache.py --images 1280"
    assert {"date", "commit", "machine"} <= set(record) and record["machine"]["cpus"] == os.cpu_count()

    pages = render_results.render_pages(tmp_path)
    assert list(pages) == ["results/teacher_cache.md"]
    page = pages["results/teacher_cache.md"]
    assert (
        "| epoch | seconds | vs baseline |\n| --- | ---: | ---: |\n"
        "| baseline epoch (CE) | 3.680 | 1.000 |\n"
        "| KD epoch, warm teacher cache | 3.312 | 0.9001 |\n"
    ) in page
    assert "Filling the cache once (teacher inference): 2.670 s." in page
    assert f"Measured {record['date']} at commit `{record['commit'] or 'unknown'}`" in page
    assert "python benchmarks/bench_teacher_cache.py --images 1280" in page
    # the lead and usage come from the benchmark script's docstring, not from the renderer
    assert "Distillation epoch time against a baseline epoch" in page
    assert "```sh\npython benchmarks/bench_teacher_cache.py [--image-size 64]" in page


def test_build_time_table_from_files_and_without(tmp_path):
    assert render_results.build_time_table({}).startswith("No build time has been measured yet")
    _write_result(
        tmp_path,
        "build_time_quickstart",
        {  # what benchmarks/bench_build_time.py writes
            "recipe": "recipes/quickstart.yaml",
            "name": "quickstart",
            "wall_seconds": 363.4,
            "cpu_seconds": 690.0,
            "peak_rss_mib": 2310.5,
            "threads": "threads: 2 (auto)",
            "load_before": [0.31, 0.5, 0.6],
            "load_after": [1.9, 1.2, 0.8],
        },
    )
    results = render_results.load_results(tmp_path)
    table = render_results.build_time_table(results)
    row = table.splitlines()[2]
    assert row.startswith(
        "| [`recipes/quickstart.yaml`](build_time_quickstart.md) | 6 min 03 s "
        "| 11 min 30 s "
        "| 2,310 | threads: 2 (auto) | 0.31 |"
    )
    assert "| [build_time_quickstart](build_time_quickstart.md) |" in render_results.results_list(results)


def test_a_broken_results_file_stops_the_render(tmp_path):
    (tmp_path / "half.json").write_text('{"benchmark": "half", "date": "2026-12-04"')
    with pytest.raises(SystemExit, match="half.json: not a readable JSON results file"):
        render_results.load_results(tmp_path)
    (tmp_path / "half.json").write_text('{"rows": []}')
    with pytest.raises(SystemExit, match="half.json: a results file needs date, command"):
        render_results.load_results(tmp_path)


def test_cells_and_docstring_markup():
    assert [render_results.fmt(v) for v in (0.7545000000000001, 257.78, 2112.9, 1e-05, None, True)] == [
        "0.7545",
        "257.8",
        "2,113",
        "1.00e-05",
        "-",
        "yes",
    ]
    assert (
        render_results.rst_to_markdown("see :func:`~edgekd.distill.kd.kd_loss` and ``x``")
        == "see `kd_loss` and `x`"
    )
    assert (
        render_results.fence_code("Run::\n\n    python a.py\n\nthen")
        == "Run::\n\n```sh\npython a.py\n```\n\nthen"
    )


def test_every_benchmark_writes_a_results_file():
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        assert "write_result(" in script.read_text(), f"{script.name} writes no results file"


def test_a_seeds_study_gets_its_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    per_seed = {
        str(s): {
            "teacher": {"top1": 0.8 + s / 100, "mean_abs_disparity": 0.2},
            "distilled": {"top1": 0.7, "mean_abs_disparity": 0.1 + s / 100},
        }
        for s in (0, 1)
    }
    summary = {
        "teacher": {"top1": {"mean": 0.805, "sd": 0.00707, "median": 0.805, "n": 2}},
        "distilled": {"top1": {"mean": 0.7, "sd": 0.0, "median": 0.7, "n": 2}},
    }
    _write_result(tmp_path, "seeds_demo", {"summary": summary, "per_seed": per_seed})
    pages = render_results.render_pages(tmp_path)
    assert pages["results/seeds_demo.png"][:8] == b"\x89PNG\r\n\x1a\n"
    page = pages["results/seeds_demo.md"]
    assert "| teacher | 2 | 0.805 ± 0.0071 | 0.805 |" in page
    assert "| 1 | 0.81 / 0.2 | 0.7 / 0.11 |" in page
    assert "](seeds_demo.png)" in page
