"""MkDocs hooks (``hooks:`` in ``mkdocs.yml``): what the docs site takes from the code.

On every build (``make docs``, ``mkdocs build``, ``mkdocs serve``):

* the recipe reference (``reference/recipe.md``, from the recipe schema) and the results pages
  (``results/*.md``, from ``benchmarks/results/*.json``) are rendered and added to the site as
  generated files: never written into ``docs/``, never committed, so never stale; the results
  pages are appended to the ``Results`` entry of the navigation;
* a line ``<!-- edgekd: docstring edgekd/distill/kd.py -->`` in a page becomes that module's
  docstring (formulas and papers live in the code, once), ``<!-- edgekd: targets -->`` the table
  of deployment targets, ``<!-- edgekd: metrics -->`` the card's metric table, and
  ``build-times`` / ``results-list`` the results index's tables. An unknown directive or a
  missing module stops the build.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):  # the scripts beside this file, and edgekd itself
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import recipe_reference  # noqa: E402
import render_results  # noqa: E402

_pages: dict[str, str | bytes] = {}
REPO = HERE.parent
DIRECTIVE = re.compile(r"^<!-- edgekd: ([\w-]+)(?: (\S+))? -->$", re.MULTILINE)


def _generated() -> dict[str, str | bytes]:
    pages = {"reference/recipe.md": recipe_reference.render()}
    pages.update(render_results.render_pages())
    return pages


def on_config(config):
    """Render the pages once per build and list the results pages under ``Results``."""
    _pages.clear()
    _pages.update(_generated())
    results = sorted(p for p in _pages if p.startswith("results/") and p.endswith(".md"))
    for entry in config.nav or []:
        if isinstance(entry, dict) and "Results" in entry:
            entry["Results"] = ["results/index.md", *results]
    return config


def on_files(files, config):
    from mkdocs.structure.files import File  # here, so the tables above import without mkdocs

    for path, text in _pages.items():
        if files.get_file_from_path(path) is not None:
            raise SystemExit(f"docs/{path} is generated on every build: remove the file from docs/")
        files.append(File.generated(config, path, content=text))
    return files


def docstring(path: str) -> str:
    """A module's docstring as Markdown (``x`` as `x`, roles as code, ``::`` blocks fenced)."""
    file = REPO / path
    if not file.is_file() or not path.startswith("edgekd/"):
        raise SystemExit(f"<!-- edgekd: docstring {path} -->: no such module under edgekd/")
    doc = ast.get_docstring(ast.parse(file.read_text())) or ""
    doc = re.sub(r"::$", ":", recipe_reference.rst_to_markdown(doc), flags=re.MULTILINE)
    return render_results.fence_code(doc)


def targets_table() -> str:
    from edgekd.export.targets import TARGETS

    rows = [
        {
            "target": f"`{t.name}`",
            "devices": t.description,
            "TensorRT": t.tensorrt,
            "rules": t.rules,
            "opset <=": t.max_opset,
            "compute capability": ", ".join(t.compute_capability),
            "DLA cores": t.dla_cores,
            "INT8 calibrator": t.int8_calibrator,
            "strongly typed": t.strongly_typed,
        }
        for t in TARGETS.values()
    ]
    return render_results.table(rows)


def metrics_table() -> str:
    from edgekd.fairness.metric_table import METRICS

    rows = [
        {
            "key": f"`{m.key}`",
            "metric": m.description,
            "better": "higher" if m.higher_is_better else "lower",
            "interval": m.interval,
            "gate": f"`card.gates.{m.gate}`" if m.gate else "-",
        }
        for m in METRICS.values()
    ]
    return render_results.table(
        rows,
        {
            "key": "key",
            "metric": "metric",
            "better": "better",
            "interval": "bootstrap interval",
            "gate": "release gate",
        },
    )


def on_page_markdown(markdown: str, page, config, files) -> str:
    def fill(match: re.Match) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "docstring" and arg:
            return docstring(arg)
        if kind == "targets":
            return targets_table()
        if kind == "metrics":
            return metrics_table()
        if kind == "build-times":
            return render_results.build_time_table(render_results.load_results())
        if kind == "results-list":
            return render_results.results_list(render_results.load_results())
        raise SystemExit(f"{page.file.src_uri}: unknown directive {match.group(0)}")

    return DIRECTIVE.sub(fill, markdown)


_ROLE_HTML = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):<code>(~?)([^<]*)</code>")


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings' Sphinx roles in the API pages (``:func:`~a.b```) read as plain code (`b`)."""

    def code(match: re.Match) -> str:
        name = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
        return f"<code>{name}</code>"

    return _ROLE_HTML.sub(code, html)
