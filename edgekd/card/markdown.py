"""Render a card as ``card.md``: Hugging Face model-card front matter, then readable tables."""

from __future__ import annotations

import yaml

from edgekd.card.bench import BENCH_HEADERS, bench_rows
from edgekd.card.table import format_table, summary_rows

__all__ = ["render_markdown", "front_matter"]

_METRIC_NAMES = {
    "top1": ("accuracy", "top-1 accuracy"),
    "mean_abs_disparity": ("mean_abs_recall_disparity", "mean |per-class recall disparity|"),
}


def front_matter(card: dict) -> dict:
    """The YAML header the Hugging Face Hub reads (``model-index`` with results per artifact)."""
    dataset = card["data"].get("source", "unknown")
    results = []
    for name, entry in card["models"].items():
        m = entry["metrics"]
        metrics = [{"type": key, "name": f"{label} ({name})", "value": round(m[metric], 6)}
                   for metric, (key, label) in _METRIC_NAMES.items() if m.get(metric) is not None]
        for metric in ("dpd", "eod"):
            if m[metric]["mean"] is not None:
                metrics.append({"type": f"mean_{metric}", "name": f"mean {metric.upper()} ({name})",
                                "value": round(m[metric]["mean"], 6)})
        results.append({
            "task": {"type": "image-classification", "name": f"{name} ({entry['kind']})"},
            "dataset": {"type": dataset, "name": dataset, "split": "test"},
            "metrics": metrics,
        })
    return {
        "library_name": "onnx",
        "pipeline_tag": "image-classification",
        "tags": ["edgekd", "knowledge-distillation", "fairness", "image-classification"],
        "datasets": [dataset],
        "base_model": f"timm/{card['models']['teacher'].get('arch', 'unknown')}",
        "metrics": ["accuracy", "mean_abs_recall_disparity", "mean_dpd", "mean_eod"],
        "model-index": [{"name": card["name"], "results": results}],
    }


def _mark(test: dict) -> str:
    return f"{test['p_adjusted']:.3g}" + (" **significant**" if test["significant"] else "")


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_markdown(card: dict) -> str:
    """The whole ``card.md``."""
    data = card["data"]
    student = card["models"]["student"]
    lines = [
        "---",
        yaml.safe_dump(front_matter(card), sort_keys=False).rstrip(),
        "---",
        "",
        f"# {card['name']} {card['version']}",
        "",
        "## Model and intended use",
        "",
        f"A {student.get('arch', 'student')} image classifier distilled from a "
        f"{card['models']['teacher'].get('arch', 'teacher')} teacher "
        f"({card['distillation']['method']}), shipped as ONNX for edge devices. Classes: "
        f"{', '.join(card['task']['classes'])}.",
        "",
        "## Data and protected attribute",
        "",
        f"{data.get('summary', '')}. Protected attribute: **{data['protected_attribute']}** "
        f"(groups: {', '.join(data['groups'])}). Splits: "
        + ", ".join(f"{k} {v}" for k, v in data["splits"].items()) + ".",
        "",
        "## Headline metrics (test split, each measured through its own runtime)",
        "",
        "```",
        format_table(summary_rows(card)),
        "```",
        "",
        "## Per-class recall by group (distilled student)",
        "",
    ]
    groups = data["groups"]
    lines.append("| class | " + " | ".join(f"recall {g}" for g in groups) + " | disparity | DPD | EOD |")
    lines.append("|---|" + "---|" * (len(groups) + 3))
    for row in student["metrics"]["per_class"]:
        cells = [_pct(row["recall_by_group"][g]) for g in groups]
        lines.append(f"| {row['class']} | " + " | ".join(cells)
                     + f" | {_pct(row['disparity'])} | {_pct(row['dpd'])} | {_pct(row['eod'])} |")
    intervals = [(name, entry["ci"]) for name, entry in card["models"].items() if entry.get("ci")]
    if intervals:
        level = intervals[0][1]["level"]
        lines += ["", f"## {level:.0%} confidence intervals ({intervals[0][1]['method']}, "
                      f"{intervals[0][1]['resamples']} resamples)", "",
                  "| model | top-1 | mean \\|disp\\| | DPD | EOD |", "|---|---|---|---|---|"]
        for name, ci in intervals:
            cells = [f"[{ci[k]['low']:.3f}, {ci[k]['high']:.3f}]" if ci.get(k) else "-"
                     for k in ("top1", "mean_abs_disparity", "dpd", "eod")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Class-wise change from distillation", ""]
    for label, key in (("teacher -> student", "teacher_to_student"),
                       ("baseline -> student", "baseline_to_student")):
        change = card["comparisons"][key]
        lines.append(f"- {label}: top-1 {change['top1_change']:+.3f}, mean |disparity| "
                     f"{change['mean_abs_disparity_change']:+.3f}")
    significance = card.get("significance", {})
    for label, key in (("teacher -> student", "teacher_to_student"),
                       ("baseline -> student", "baseline_to_student")):
        if key not in significance:
            continue
        test = significance[key]
        changed = ", ".join(test["significant_classes"]) or "none"
        lines.append(f"- {label}: {test['share_significant']:.0%} of classes significantly changed "
                     f"({test['test']}, alpha {test['alpha']}): {changed}")
    if significance:
        lines += ["", "| class | recall change teacher -> student | p (adj.) | "
                      "recall change baseline -> student | p (adj.) |", "|---|---|---|---|---|"]
        rows = zip(card["comparisons"]["teacher_to_student"]["per_class"],
                   significance["teacher_to_student"]["per_class"],
                   card["comparisons"]["baseline_to_student"]["per_class"],
                   significance["baseline_to_student"]["per_class"])
        for t_change, t_test, b_change, b_test in rows:
            lines.append(f"| {t_change['class']} | {_signed(t_change['recall_change'])} | {_mark(t_test)} | "
                         f"{_signed(b_change['recall_change'])} | {_mark(b_test)} |")
    lines += ["", "## Release gates", "", "| gate | artifact | value | threshold | result |",
              "|---|---|---|---|---|"]
    for gate in card["gates"]:
        lines.append(f"| {gate['name']} | {gate['artifact']} | {_pct(gate['value'])} | "
                     f"{gate['comparison']} {gate['threshold']} | "
                     f"{'pass' if gate['passed'] else '**FAIL**'} |")
    lines += ["", "## Bench results", ""]
    if card["bench"]:
        lines += ["```", format_table(bench_rows(card), BENCH_HEADERS), "```"]
    else:
        lines.append("None yet: run `edgekd bench BUNDLE --update-card` on the device.")
    if card.get("plots"):
        lines += ["", "## Plots", ""] + [f"- `{p}`" for p in card["plots"]]
    lines += ["", "## Limitations", ""]
    if data.get("synthetic"):
        lines.append("- The data is synthetic (generated shapes); the numbers show the pipeline and "
                     "the direction of effects, not performance on real images.")
    lines.append("- Fairness is measured for one protected attribute with the groups above; other "
                 "attributes and intersections are not covered.")
    prov = card["provenance"]
    lines += ["", "## Provenance", "", f"- recipe sha256: `{prov['recipe_sha256']}`",
              f"- seed: {prov['seed']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()), ""]
    return "\n".join(lines)
