"""Render a card as ``card.md``: Hugging Face model-card front matter, then readable tables.

Sections, in order: model and intended use; distillation (and adversarial debiasing); the epoch
each torch model ships and the score that chose it; data and protected attribute(s), with the
cells too small to measure (and each torch model's training augmentation); headline metrics per model and
artifact with bootstrap intervals and the worst (class, group) cell; exported artifacts against the
torch student; per-class disparity of every model; per-class recall by group of the distilled
student; each protected attribute alone (several attributes); classes changed by distillation
(significant, and by at least ``card.min_effect``); compression by group (what each step of the
chain did to each (class, group) cell, with each artifact's flipped images); deployment; release
gates; bench results; plots; limitations; provenance. Every section after the headline tolerates a
card that lacks its keys (cards written before the key existed, minimal test cards). Every card
string is escaped for Markdown before it is placed (:mod:`edgekd.card.escape`), every number
printed without a negative zero (:mod:`edgekd.card.numbers`). The front matter describes the
shipped model only (:func:`front_matter`).
"""

from __future__ import annotations

import re

import yaml

from edgekd.card.bench import bench_headers, bench_rows
from edgekd.card.escape import markdown_card, plain_card
from edgekd.card.flipped import cell_order
from edgekd.card.hub import DEFAULT_LICENSE, dataset_id
from edgekd.card.numbers import fixed, general, signed
from edgekd.fairness.metric_table import METRICS

__all__ = ["render_markdown", "front_matter", "shipped_model", "base_models", "pipe_table"]


def base_models(card: dict) -> list[str]:
    """The hub repos of the weights the build started from: the student's (the shipped
    artifacts are trained from them), then the teacher's (the student learned from it); none
    when both were trained from scratch or from local files outside the hub's cache."""
    ids = []
    for name in ("student", "teacher"):
        hub_id = ((card["models"].get(name) or {}).get("weights") or {}).get("hub_id")
        if hub_id and hub_id not in ids:
            ids.append(hub_id)
    return ids


SHIPPED = ("onnx", "student")  # the model a card's model-index describes: the first present


def shipped_model(card: dict) -> str:
    """The name of the model the card's Hub metadata describes: ``onnx`` (model.onnx, fp32,
    measured through onnxruntime: the file that ships, through the runtime that runs it), or
    ``student`` on a card without it."""
    return next(name for name in (*SHIPPED, *card["models"]) if name in card["models"])


def _runtime(entry: dict) -> str:
    """The runtime that measured an artifact, without its execution providers."""
    return str(entry.get("runtime") or entry["kind"]).split(" (")[0]


def _hub_metrics(card: dict, name: str) -> list[dict]:
    entry = card["models"][name]
    where = f"{entry['file']} through {_runtime(entry)}" if entry.get("file") else f"{name}, {entry['kind']}"
    metrics = [
        {"type": m.hub_type or m.key, "name": f"{m.description} ({where})", "value": round(value, 6)}
        for m in METRICS.values()
        if (value := m.read(entry["metrics"])) is not None
    ]
    worst = entry["metrics"].get("worst_cell")
    if worst:
        attribute = card["data"].get("protected_attribute", "group")
        metrics.append(
            {
                "type": "worst_class_group_recall",
                "name": f"lowest recall of a (class, {attribute}) cell: {worst['class']}, "
                f"{worst['group']} ({where})",
                "value": round(worst["recall"], 6),
            }
        )
    return metrics


def front_matter(card: dict) -> dict:
    """The YAML header the Hugging Face Hub reads.

    ``model-index`` has one result: the shipped model (:func:`shipped_model`) on the test split.
    The Hub keys results by task and dataset, so results of several models on the same data
    would merge into one under the first model's name; the teacher and the baseline are
    comparisons in the text, not results. ``license`` is the recipe's ``card.license``
    (``unknown`` on cards from before it), ``datasets`` a Hub dataset id only where the data is
    one (:func:`edgekd.card.hub.dataset_id`).

    ``base_model`` names the exact timm weights (``timm/efficientnet_b0.ra_in1k``) only when the
    build loaded some (:func:`base_models`), with ``base_model_relation: finetune``: the Hub
    has no relation for distillation, and without it two base models read as a merge.
    """
    data = card["data"]
    source = data.get("source", "unknown")
    hub_dataset = dataset_id(data)
    name = shipped_model(card)
    front: dict = {"license": card.get("license", DEFAULT_LICENSE)}
    if front["license"] == "other" and card.get("license_name"):
        front["license_name"] = card["license_name"]
    front.update(
        {
            "library_name": "onnx",
            "pipeline_tag": "image-classification",
            "tags": ["edgekd", "knowledge-distillation", "fairness", "image-classification"],
        }
    )
    if hub_dataset:
        front["datasets"] = [hub_dataset]
    bases = base_models(card)
    if bases:
        front["base_model"] = bases[0] if len(bases) == 1 else bases
        front["base_model_relation"] = "finetune"
    metrics = _hub_metrics(card, name)
    front["metrics"] = list(dict.fromkeys(m["type"] for m in metrics))
    result = {
        "task": {"type": "image-classification", "name": "Image Classification"},
        "dataset": {
            "type": hub_dataset or source,
            "name": source
            if not hub_dataset or hub_dataset.endswith(f"/{source}")
            else f"{source} (from {hub_dataset})",
            "split": "test",
        },
        "metrics": metrics,
    }
    front["model-index"] = [{"name": card["name"], "results": [result]}]
    return front


# ------------------------------------------------------------------------------------ cells
def _num(value, digits: int = 3) -> str:
    return fixed(value, digits)


def _signed(value) -> str:
    return signed(value)


def _mark(test: dict) -> str:
    """The p-value cell: ``**changed**`` when significant and large enough, ``significant, under
    min_effect`` when only significant; cards before the threshold say ``**significant**``."""
    if not test["significant"]:
        return f"{test['p_adjusted']:.3g}"
    if "changed" not in test:
        return f"{test['p_adjusted']:.3g} **significant**"
    return f"{test['p_adjusted']:.3g} " + (
        "**changed**" if test["changed"] else "significant, under min_effect"
    )


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return general(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)  # card strings arrive escaped (render_markdown), their | included


def pipe_table(rows: list[dict], headers: dict[str, str]) -> list[str]:
    """A Markdown pipe table of ``rows``; columns whose every value is missing are left out."""
    keys = [k for k in headers if any(r.get(k) is not None for r in rows)]
    if not keys:
        return []
    lines = ["| " + " | ".join(headers[k].replace("|", "\\|") for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    return lines


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


# --------------------------------------------------------------------------------- sections
def _started_from(weights: dict | None) -> str | None:
    source = (weights or {}).get("source")
    if source == "pretrained":
        return f"timm's pretrained weights {weights.get('hub_id')}"
    if source == "checkpoint":
        sha = weights.get("sha256", "")
        return f"the checkpoint {weights.get('file')} (sha256 {sha[:12]})" + (
            f", {weights['hub_id']}" if weights.get("hub_id") else ""
        )
    return "scratch" if source == "scratch" else None


def _weights_sentence(card: dict) -> str:
    """Where teacher, baseline and student started (cards before the key: nothing)."""
    parts = [
        f"{name} from {started}"
        for name in ("teacher", "baseline", "student")
        if (started := _started_from((card["models"].get(name) or {}).get("weights")))
    ]
    return ("Training started: " + "; ".join(parts) + ".") if parts else ""


def _intro(card: dict) -> list[str]:
    student, teacher = card["models"]["student"], card["models"]["teacher"]
    arch = student.get("arch", "student")
    method = card.get("distillation", {}).get("method", "distillation")
    shipped = [n for n, e in card["models"].items() if e.get("kind") != "torch"]
    return [
        "## Model and intended use",
        "",
        f"{_article(arch)} {arch} image classifier distilled ({method}) from "
        f"{_article(teacher.get('arch', 'x')).lower()} {teacher.get('arch', 'teacher')} teacher, "
        f"for edge devices. Classes: {', '.join(card['task']['classes'])}. "
        + " ".join(
            part
            for part in (
                f"Shipped artifacts: {', '.join(shipped)}." if shipped else "",
                _weights_sentence(card),
            )
            if part
        ),
        "",
        f"The Hub metadata (model-index) reports {_shipped_text(card)} only; the teacher and the "
        "baseline are comparisons in the tables below. " + _license_text(card),
        "",
        "Intended use: classifying images like the training data on the device, with the "
        "per-group behaviour below known and accepted. Not for decisions about people on the "
        "basis of the protected attribute; check the per-class disparities and gates before use "
        "in a new population.",
    ]


def _shipped_text(card: dict) -> str:
    name = shipped_model(card)
    entry = card["models"][name]
    if entry.get("file"):
        return f"{entry['file']} ({entry.get('precision', 'fp32')}, measured through {_runtime(entry)})"
    return f"the {name}"


def _license_text(card: dict) -> str:
    license_id = card.get("license", DEFAULT_LICENSE)
    named = f" ({card['license_name']})" if license_id == "other" and card.get("license_name") else ""
    hint = (
        "; the terms of the training data and of the starting weights apply: state them with `card.license`"
        if license_id == "unknown"
        else ""
    )
    return f"License: {license_id}{named}{hint}."


def _distillation(card: dict) -> list[str]:
    distill = card.get("distillation") or {}
    settings = {k: v for k, v in distill.items() if k not in ("learned", "method", "cache_teacher")}
    lines = [
        "",
        "## Distillation",
        "",
        f"- method: **{distill.get('method', '-')}**"
        + (" (" + ", ".join(f"{k} {_cell(v)}" for k, v in settings.items()) + ")" if settings else ""),
    ]
    for key, value in (distill.get("learned") or {}).items():
        if key == "debias":  # the adversary's settings, shown with its results below
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
        lines.append(f"- learned {key}: {_cell(value)}")
    debias = card.get("debias") or {}
    if debias.get("reweigh"):
        lines.append(
            "- reweighing: each epoch drawn with weight P(class) P(group) / P(class, group) "
            f"per image (Kamiran & Calders 2012), applied to "
            f"{', '.join(debias.get('apply_to', [])) or '-'}"
        )
    if debias.get("method", "none") != "none":
        lines.append(
            f"- adversarial debiasing: {debias['method']}, lambda {debias.get('lambda')}, "
            f"criterion {debias.get('criterion')}, applied to "
            f"{', '.join(debias.get('apply_to', [])) or '-'}"
        )
        for stage, epochs in (debias.get("epochs") or {}).items():
            if epochs:
                last = epochs[-1]
                criterion = debias.get("criterion")
                what = (
                    "the majority group of each class, as the adversary is given the label"
                    if criterion == "equalized_odds"
                    else "the largest group's share"
                )
                lines.append(
                    f"- {stage}: the adversary predicts the group with accuracy "
                    f"{_num(last.get('adversary_top1'))} after epoch {last.get('epoch')}, "
                    f"against {_num(last.get('adversary_reference'))} for an output that "
                    f"leaks nothing {criterion or ''} forbids ({what})"
                )
    else:
        lines.append("- adversarial debiasing: off")
    return lines


def _checkpoints(card: dict) -> list[str]:
    """Which epoch of each torch model ships, and the validation score that chose it."""
    trained = [
        (name, entry["training"])
        for name, entry in card["models"].items()
        if isinstance(entry.get("training"), dict) and entry["training"].get("selected_by")
    ]
    lines = []
    for name, training in trained:
        metric = training["selected_by"]
        score = training.get(f"best_val_{metric}", training.get("best_val_top1"))
        aids = []
        if training.get("precision") not in (None, "fp32"):
            aids.append(f"{training['precision']} autocast")
        if training.get("label_smoothing"):
            aids.append(f"label smoothing {_cell(training['label_smoothing'])}")
        lines.append(
            f"- {name}: best epoch chosen by validation {metric}: epoch "
            f"{training.get('best_epoch')} of {training.get('epochs')} ({metric} "
            f"{_num(score)}, top-1 {_num(training.get('best_val_top1'))})"
            + (f"; trained with {', '.join(aids)}" if aids else "")
        )
    if not lines:
        return []
    return [
        "",
        "## Checkpoints",
        "",
        "The validation split carries the training data's bias, so a group-aware score "
        "(mean recall over (class, group) cells) picks the epoch unless the recipe's "
        "`select_by` says otherwise.",
        "",
        *lines,
    ]


def _data(card: dict) -> list[str]:
    data = card["data"]
    counts = data.get("test_counts_by_group") or {}
    if card.get("by_attribute"):
        protected = (
            f"Protected attributes: **{data['protected_attribute']}**; the groups are their "
            f"intersections ({', '.join(data['groups'])})"
        )
    else:
        protected = (
            f"Protected attribute: **{data['protected_attribute']}** (groups: {', '.join(data['groups'])})"
        )
    return [
        "",
        "## Data and protected attribute" + ("s" if card.get("by_attribute") else ""),
        "",
        f"{data.get('summary', '')}. {protected}. Splits: "
        + ", ".join(f"{k} {v}" for k, v in data["splits"].items())
        + "."
        + (
            " Test images per group: " + ", ".join(f"{g} {n}" for g, n in counts.items()) + "."
            if counts
            else ""
        )
        + (f" On the Hugging Face Hub: {dataset_id(data)}." if dataset_id(data) else ""),
        *_small(data),
        *_augmentation(card),
    ]


def _augmentation(card: dict) -> list[str]:
    """One line: each torch model's training augmentation, models with the same one together."""
    described: dict[str, list[str]] = {}
    for name, entry in card["models"].items():
        settings = (entry.get("training") or {}).get("augment") if isinstance(entry, dict) else None
        if isinstance(settings, dict):
            described.setdefault(_augment_text(settings), []).append(name)
    if not described:
        return []
    return [
        "",
        "Training augmentation (of the training images only; validation, test and every "
        "artifact's evaluation see the images as they are): "
        + "; ".join(f"{' and '.join(names)}: {text}" for text, names in described.items())
        + ".",
    ]


def _augment_text(settings: dict) -> str:
    if not settings.get("enabled"):
        return "off"
    parts = []
    scale, ratio = settings.get("crop_scale"), settings.get("crop_ratio")
    if scale:
        parts.append(
            f"random resized crop (scale {scale[0]:g}-{scale[1]:g}"
            + (f", ratio {ratio[0]:.2f}-{ratio[1]:.2f})" if ratio else ")")
        )
    if settings.get("hflip"):
        parts.append(f"horizontal flip (p {settings['hflip']:g})")
    policy = settings.get("policy")
    if policy == "randaugment":
        parts.append(f"RandAugment ({settings.get('num_ops')} ops, magnitude {settings.get('magnitude')})")
    elif policy == "trivialaugment":
        parts.append("TrivialAugment")
    elif policy not in (None, "none"):
        parts.append(str(policy))
    return ", ".join(parts) or "on, with every transform off"


_LISTED = 20  # small cells named in card.md; card.json names them all


def _small_cell_lines(cells: list[dict], groups: list[dict], min_support: int) -> list[str]:
    lines = [f"- {c['group']} in class {c['class']}: {c['images']} images, left out" for c in cells[:_LISTED]]
    if len(cells) > _LISTED:
        lines.append(f"- and {len(cells) - _LISTED} more cells (card.json: small_cells)")
    if groups:
        lines.append(
            f"- groups with fewer than {min_support} test images in all, left out of DPD: "
            + ", ".join(f"{g['group']} ({g['images']} images)" for g in groups)
        )
    return lines


def _small(data: dict) -> list[str]:
    """The cells too small to measure (``data.min_support``), named."""
    if "min_support" not in data:  # a card from before the threshold: every cell with an image
        return []
    m = data["min_support"]
    cells, groups = data.get("small_cells") or [], data.get("small_groups") or []
    if not cells and not groups:
        return ["", f"Every (class, group) cell has at least {m} test images (`card.min_support`)."]
    return [
        "",
        f"Cells too small to measure (fewer than {m} test images of the class in the group, "
        "`card.min_support`) are left out of that class's disparity and EOD, and so of the "
        "means; their recall is still shown:",
        "",
        *_small_cell_lines(cells, groups, m),
    ]


def _with_ci(value, ci: dict | None, key: str) -> str:
    interval = (ci or {}).get(key)
    if value is None:
        return "-"
    return fixed(value) + (f" [{fixed(interval['low'])}, {fixed(interval['high'])}]" if interval else "")


def _worst_cell(metrics: dict) -> str:
    """``0.000 (shirt, dark)``: the lowest cell recall and its cell (``-`` on cards before it)."""
    worst = metrics.get("worst_cell")
    return f"{_num(worst['recall'])} ({worst['class']}, {worst['group']})" if worst else "-"


def _agreement(drift: dict) -> str:
    """The agreement cell: with the student, or (engines built on the device) with the file
    named, and the bounds that puts on the agreement with the student."""
    text = _num(drift.get("prediction_agreement"), 4)
    if drift.get("agreement_with"):
        text += f" (with {drift['agreement_with'].split(' ', 1)[0]}"
        bounds = drift.get("student_agreement_bounds")
        if bounds:
            text += (
                f"; with the student {_num(bounds[0], 4)}"
                if bounds[0] == bounds[1]
                else f"; with the student {_num(bounds[0], 4)} to {_num(bounds[1], 4)}"
            )
        text += ")"
    return text


def _headline(card: dict) -> list[str]:
    intervals = [e["ci"] for e in card["models"].values() if e.get("ci")]
    title = "## Headline metrics (test split, each measured through its own runtime)"
    if intervals:
        ci = intervals[0]
        title += (
            f"; {ci['level']:.0%} confidence intervals ({ci['method']}, "
            f"{ci['resamples']} resamples, seed {ci.get('seed')})"
        )
    columns = [
        "model",
        "kind",
        "precision",
        *(m.title.replace("|", "\\|") for m in METRICS.values()),
        f"worst recall (class, {card['data']['protected_attribute']})",
        "size MB",
    ]
    lines = ["", title, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, entry in card["models"].items():
        m, ci = entry["metrics"], entry.get("ci")
        cells = [_with_ci(metric.read(m), ci, metric.key) for metric in METRICS.values()]
        size = entry.get("size_bytes")
        lines.append(
            f"| {name} | {entry['kind']} | {entry.get('precision', 'fp32')} | "
            + " | ".join(cells)
            + f" | {_worst_cell(m)} | {_num(size / 1e6 if size else None, 1)} |"
        )
    if any(e["metrics"].get("worst_cell") for e in card["models"].values()):
        lines += [
            "",
            "Worst recall: the (class, group) cell with the lowest recall among the cells with "
            f"at least {card['data'].get('min_support', 1)} test images; a mean gap can be "
            "small while one cell is never recognised.",
        ]
    drift = [(n, e["vs_student"]) for n, e in card["models"].items() if e.get("vs_student")]
    if drift:
        lines += [
            "",
            "Exported artifacts against the torch student they came from:",
            "",
            "| artifact | file | prediction agreement | top-1 change | mean \\|disparity\\| change |",
            "|---|---|---|---|---|",
        ]
        for name, d in drift:
            lines.append(
                f"| {name} | {card['models'][name].get('file', '-')} | {_agreement(d)} | "
                f"{_signed(d.get('top1_change'))} | {_signed(d.get('mean_abs_disparity_change'))} |"
            )
        quantized = [
            (n, e["export"])
            for n, e in card["models"].items()
            if isinstance(e.get("export"), dict) and "kept_in_float" in e["export"]
        ]
        for name, export in quantized:  # how far INT8 got, and what it kept in float to get there
            bound = export.get("min_agreement")
            kept = ", ".join(export["kept_in_float"]) or "nothing"
            agreement = export.get("agreement_with_fp32_on_validation")
            lines.append("")
            below = None not in (bound, agreement) and agreement < bound
            lines.append(
                f"{name}: agreement with fp32 on the validation images (each (class, group) "
                f"cell weighted as in a balanced split) {_num(agreement, 4)}"
                + (f" (bound {bound})" if bound is not None else "")
                + (" **below the bound**" if below else "")
                + f"; kept in float: {kept}"
                + (
                    f"; after INT8-aware fine-tuning of a copy of the student "
                    f"({export['fine_tuning'].get('steps')} steps, `export.int8.qat`)"
                    if export.get("fine_tuned") and isinstance(export.get("fine_tuning"), dict)
                    else ""
                )
                + "."
            )
        built = [(n, e["built_on"]) for n, e in card["models"].items() if e.get("built_on_device")]
        for name, where in built:
            lines.append("")
            lines.append(
                f"{name} was built and evaluated on the device: "
                + ", ".join(f"{k} {v}" for k, v in where.items() if v is not None)
                + "."
            )
    return lines


def _disparity_table(card: dict) -> list[str]:
    groups = card["data"]["groups"]
    sign = (
        f"recall({groups[0]}) - recall({groups[1]})"
        if len(groups) == 2
        else "max - min recall over the groups"
    )
    m = card["data"].get("min_support", 1)
    few = "no test image" if m <= 1 else f"fewer than {m} test images"
    undefined = (
        f"`-` where a group has {few} of the class"
        if len(groups) == 2
        else f"over the groups with at least {m} test images of the class; `-` where fewer than two have them"
    )
    names = list(card["models"])
    lines = [
        "",
        "## Per-class recall disparity, every model and artifact",
        "",
        f"Disparity = {sign}; {undefined}.",
        "",
        "| class | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for k, cls in enumerate(card["task"]["classes"]):
        cells = [_signed(card["models"][n]["metrics"]["per_class"][k]["disparity"]) for n in names]
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    means = [_num(card["models"][n]["metrics"]["mean_abs_disparity"]) for n in names]
    lines.append("| mean \\|disparity\\| | " + " | ".join(means) + " |")
    return lines


def _student_by_group(card: dict) -> list[str]:
    groups = card["data"]["groups"]
    lines = [
        "",
        f"## Per-class recall by {card['data']['protected_attribute']} (distilled student)",
        "",
        "| class | " + " | ".join(f"recall {g}" for g in groups) + " | disparity | DPD | EOD |",
        "|---|" + "---|" * (len(groups) + 3),
    ]
    for row in card["models"]["student"]["metrics"]["per_class"]:
        cells = [_num(row["recall_by_group"][g]) for g in groups]
        lines.append(
            f"| {row['class']} | "
            + " | ".join(cells)
            + f" | {_signed(row['disparity'])} | {_num(row['dpd'])} | {_num(row['eod'])} |"
        )
    return lines


def _by_attribute(card: dict) -> list[str]:
    """Each protected attribute alone: the gaps over its own groups, every model."""
    attributes = card.get("by_attribute") or {}
    if not attributes:
        return []
    m = card["data"].get("min_support", 1)
    lines = [
        "",
        "## Each protected attribute alone",
        "",
        "The same gaps over one attribute's groups, every image counted in its value of that "
        f"attribute whatever the others (cells under {m} test images left out, as above).",
        "",
        "| attribute | model | mean \\|disparity\\| | max \\|disparity\\| (class) | mean DPD | mean EOD |",
        "|---|---|---|---|---|---|",
    ]
    for attribute, section in attributes.items():
        for name, metrics in (section.get("models") or {}).items():
            worst = metrics.get("max_abs_disparity")
            where = (
                f" ({metrics['max_abs_disparity_class']})"
                if worst is not None and metrics.get("max_abs_disparity_class")
                else ""
            )
            lines.append(
                f"| {attribute} ({', '.join(section.get('groups', []))}) | {name} | "
                f"{_num(metrics.get('mean_abs_disparity'))} | {_num(worst)}{where} | "
                f"{_num((metrics.get('dpd') or {}).get('mean'))} | "
                f"{_num((metrics.get('eod') or {}).get('mean'))} |"
            )
    for attribute, section in attributes.items():
        cells, groups = section.get("small_cells") or [], section.get("small_groups") or []
        if cells or groups:
            lines += [
                "",
                f"{attribute} alone, cells under {m} test images:",
                "",
                *_small_cell_lines(cells, groups, m),
            ]
    return lines


_PAIRS = (("teacher -> student", "teacher_to_student"), ("baseline -> student", "baseline_to_student"))


def _changed_line(label: str, test: dict, n: int) -> str:
    """``2 of 4 classes changed significantly by at least 0.02``, with the count at any size."""
    method = f"{test['test']}, alpha {test['alpha']}"
    significant = test["significant_classes"]
    if "changed_classes" not in test:  # a card from before the effect-size threshold
        return (
            f"- {label}: **{len(significant)} of {n} classes significantly changed** ({method}; "
            f"no effect-size threshold on this card): {', '.join(significant) or 'none'}"
        )
    changed = test["changed_classes"]
    return (
        f"- {label}: **{len(changed)} of {n} classes changed significantly by at least "
        f"{_cell(test.get('min_effect'))}** in recall ({method}): {', '.join(changed) or 'none'}; "
        f"{len(significant)} of {n} significant at any size"
    )


def _significance(card: dict) -> list[str]:
    lines = ["", "## Classes significantly changed by distillation", ""]
    comparisons = card.get("comparisons") or {}
    significance = card.get("significance") or {}
    attribute = card["data"]["protected_attribute"]
    for label, key in _PAIRS:
        change = comparisons.get(key)
        if change:
            lines.append(
                f"- {label}: top-1 {_signed(change.get('top1_change'))}, mean |disparity| "
                f"{_signed(change.get('mean_abs_disparity_change'))}"
            )
    for label, key in _PAIRS:
        test = significance.get(key)
        if not test:
            continue
        lines.append(_changed_line(label, test, len(test["per_class"])))
        flag = "changed" if "changed_classes" in test else "significant"
        by_group: dict[str, list[str]] = {}
        for row in test["per_class"]:
            for group, cell in row.get("by_group", {}).items():
                if cell.get(flag):
                    by_group.setdefault(group, []).append(row["class"])
        if any(row.get("by_group") for row in test["per_class"]):
            size = f", by at least {_cell(test.get('min_effect'))}" if flag == "changed" else ""
            lines.append(
                f"  - within one {attribute} group ({label}, corrected over every class and "
                f"group{size}): "
                + "; ".join(
                    f"{g}: {', '.join(by_group.get(g, [])) or 'none'}" for g in card["data"]["groups"]
                )
            )
    if not significance.get("teacher_to_student"):
        lines.append("- no per-class significance test on this card")
    elif all(key in comparisons and "per_class" in comparisons[key] for _, key in _PAIRS):
        lines += [
            "",
            "| class | recall change teacher -> student | p (adj.) | "
            "recall change baseline -> student | p (adj.) |",
            "|---|---|---|---|---|",
        ]
        rows = zip(
            comparisons["teacher_to_student"]["per_class"],
            significance["teacher_to_student"]["per_class"],
            comparisons["baseline_to_student"]["per_class"],
            significance["baseline_to_student"]["per_class"],
        )
        for t_change, t_test, b_change, b_test in rows:
            lines.append(
                f"| {t_change['class']} | {_signed(t_change['recall_change'])} | {_mark(t_test)} | "
                f"{_signed(b_change['recall_change'])} | {_mark(b_test)} |"
            )
    seeds = significance.get("across_seeds")
    if seeds:
        lines += [
            "",
            "### Across seeds" + (f" ({', '.join(map(str, seeds['seeds']))})" if seeds.get("seeds") else ""),
            "",
        ]
        for label, key in _PAIRS:
            test = seeds.get(key)
            if test:
                lines.append(
                    f"- {label}: **{test['share_significant']:.0%} of classes significantly "
                    f"changed** ({test['test']}, alpha {test['alpha']}): "
                    f"{', '.join(test['significant_classes']) or 'none'}"
                )
        test = seeds.get("teacher_to_student") or seeds.get("baseline_to_student")
        if test:
            lines += [
                "",
                "| class | recall/top-1 before | recall/top-1 student | p (adj.) |",
                "|---|---|---|---|",
            ]
            for row in test["per_class"]:
                lines.append(
                    f"| {row['class']} | {_num(row.get('mean_normalised_a'))} | "
                    f"{_num(row.get('mean_normalised_b'))} | {_mark(row)} |"
                )
    return lines


# ------------------------------------------------------------------- compression by group
_TOP_CELLS = 5  # cells shown per step besides the significant ones: the lowest agreement
_SHOWN_CELLS = 20  # at most this many rows per step table; the rest counted (card.md) or folded
_PAIRED = {
    "images": "images",
    "agreement": "agreement",
    "right_to_wrong": "right -> wrong",
    "wrong_to_right": "wrong -> right",
}


def _compression_plots(card: dict) -> set[str]:
    """The plots the compression section shows (its heatmap, each artifact's flipped images)."""
    section = card.get("compression_by_group") or {}
    plots = {section.get("plot")} | {
        (step.get("examples") or {}).get("plot") for step in section.get("steps") or []
    }
    return {p for p in plots if p}


def _paired_cells(row: dict, change: str) -> str:
    return (
        f"{row.get('images', '-')} | {_num(row.get('agreement'))} | {row.get('right_to_wrong', '-')} | "
        f"{row.get('wrong_to_right', '-')} | {_signed(row.get(change))}"
    )


def _worst_text(worst: dict | None, *keys: str) -> str:
    if not worst:
        return "-"
    where = ", ".join(str(worst[k]) for k in keys)
    return f"{_num(worst.get('agreement'))} ({where}; {worst.get('images')} images)"


def _step_title(step: dict) -> str:
    where = step.get("measured_on")
    return step["step"] + ("" if where in (None, "build") else f" (on {where})")


def _cell_table(rows: list[dict]) -> list[str]:
    lines = [
        "| cell | images | agreement | right -> wrong | wrong -> right | recall change | p (adj.) |",
        "|---|---|---|---|---|---|---|",
    ]
    return lines + [
        f"| {r['class']} / {r['group']} | {_paired_cells(r, 'accuracy_change')} | {_mark(r)} |" for r in rows
    ]


def _step_lines(step: dict, plots: list[str], *, fold_rest: bool) -> list[str]:
    overall = step.get("overall") or {}
    changed = step.get("changed_cells") or []
    lines = [
        "",
        f"### {_step_title(step)}",
        "",
        f"All {overall.get('images')} test images: agreement {_num(overall.get('agreement'), 4)}, "
        f"{overall.get('right_to_wrong')} right -> wrong and {overall.get('wrong_to_right')} "
        f"wrong -> right (top-1 {_signed(overall.get('accuracy_change'))}, McNemar p "
        f"{_cell(overall.get('p'))}); {step.get('changed_images')} predictions changed. "
        f"Changed cells: **{', '.join(changed) if changed else 'none'}**.",
    ]
    groups = step.get("per_group") or []
    if groups:
        lines += [
            "",
            "| group | images | agreement | right -> wrong | wrong -> right | accuracy change | p (adj.) |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [f"| {r['group']} | {_paired_cells(r, 'accuracy_change')} | {_mark(r)} |" for r in groups]
    ordered = sorted(step.get("per_cell") or [], key=cell_order)
    flagged = sum(1 for r in ordered if r.get("changed") or r.get("significant"))
    moved = sum(
        1 for r in ordered[flagged:] if (r.get("agreement") if r.get("agreement") is not None else 1.0) < 1.0
    )
    count = min(_SHOWN_CELLS, flagged + min(_TOP_CELLS, moved))
    shown, rest = ordered[:count], ordered[count:]
    lines.append("")
    if not shown:
        return [
            *lines,
            f"Every one of the {len(ordered)} cells kept every prediction.",
            *_examples_lines(step, plots),
        ]
    lines += _cell_table(shown)
    if rest:
        agreements = [r["agreement"] for r in rest if r.get("agreement") is not None]
        low, high = (_num(min(agreements)), _num(max(agreements))) if agreements else ("-", "-")
        span = (
            "" if not agreements else f", agreement {low}" if low == high else f", agreement {low} to {high}"
        )
        more = sum(1 for r in rest if r.get("changed") or r.get("significant"))
        cells = f"{len(rest)} more cell" + ("s" if len(rest) > 1 else "")
        summary = (
            f"{cells} ({more} of them significant{span})" if more else f"{cells}, none significant{span}"
        )
        if fold_rest:
            lines += [
                "",
                "<details>",
                f"<summary>{summary}</summary>",
                "",
                *_cell_table(rest),
                "",
                "</details>",
            ]
        else:
            lines += ["", f"And {summary}: card.html and card.json `compression_by_group` list them."]
    return lines + _examples_lines(step, plots)


def _examples_lines(step: dict, plots: list[str]) -> list[str]:
    """The images an artifact changed: the grid (a plot of this bundle only) and its rows."""
    examples = step.get("examples")
    if examples is None:
        return []
    cells = examples.get("cells") or []
    plot = examples.get("plot")
    examples = {**examples, "plot": plot if plot in plots and _PLOT.match(str(plot)) else None}
    if not cells:
        return ["", f"No test image changed its prediction in {step.get('after')}."]
    lines = [
        "",
        f"Images whose prediction {step.get('after')} changed (indices into the test split: "
        "`eval_set.npz`, `predictions.npz` `changed_"
        + str(step.get("after"))
        + "`)"
        + (", one row of the grid per cell, in this order:" if examples.get("plot") else ":"),
        "",
    ]
    if examples.get("plot"):
        lines += [f"![images {step.get('after')} changed]({examples['plot']})", ""]
    elif examples.get("note"):
        lines += [f"No thumbnails: {examples['note']}.", ""]
    lines += ["| row | cell | changed | shown (indices) |", "|---|---|---|---|"]
    lines += [
        f"| {k + 1} | {c['class']} / {c['group']} | {c.get('changed')} | "
        f"{', '.join(map(str, c.get('indices') or []))} |"
        for k, c in enumerate(cells)
    ]
    return lines


def _compression(card: dict, *, fold_rest: bool = False) -> list[str]:
    """What every step of the chain did to each (class, group) cell (cards before it: nothing)."""
    section = card.get("compression_by_group") or {}
    steps = section.get("steps") or []
    if not steps:
        return []
    attribute = card["data"]["protected_attribute"]
    lines = [
        "",
        "## Compression by group",
        "",
        f"What each step did to each (class, {attribute}) cell of the test split, on the same "
        "images before and after: agreement (the share of predictions the step kept), flips "
        "right -> wrong and wrong -> right, recall change (after - before), McNemar's exact test "
        f"on the flips with Benjamini-Hochberg over the cells of the step (alpha "
        f"{_cell(section.get('alpha'))}). **changed**: significant and |recall change| at least "
        f"{_cell(section.get('min_effect'))}. Worst cell and group: lowest agreement among those "
        f"with at least {_cell(section.get('min_support'))} test images. Changed cells come first "
        "in each table, then the lowest agreement.",
        "",
        "| step | agreement | right -> wrong | wrong -> right | top-1 change | predictions changed "
        "| worst cell | worst group | changed cells |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        overall = step.get("overall") or {}
        lines.append(
            f"| {_step_title(step)} | {_num(overall.get('agreement'), 4)} | "
            f"{overall.get('right_to_wrong', '-')} | {overall.get('wrong_to_right', '-')} | "
            f"{_signed(overall.get('accuracy_change'))} | {step.get('changed_images', '-')} | "
            f"{_worst_text(step.get('worst_cell'), 'class', 'group')} | "
            f"{_worst_text(step.get('worst_group'), 'group')} | "
            f"{len(step.get('changed_cells') or [])} |"
        )
    plot = section.get("plot")
    if plot and plot in (card.get("plots") or []) and _PLOT.match(plot):
        lines += [
            "",
            f"![compression by group]({plot})",
            "",
            "Cells (rows) by steps (columns), coloured by the cell's recall change (red: lost); "
            "the numbers are its flips right -> wrong/wrong -> right, * and a frame mark a "
            "changed cell.",
        ]
    for step in steps:
        lines += _step_lines(step, card.get("plots") or [], fold_rest=fold_rest)
    return lines


def _deployment(card: dict) -> list[str]:
    """The deployment target, and whether the files meant for TensorRT pass its parser."""
    deployment = card.get("deployment")
    if not deployment:
        return []
    target, onnx = deployment.get("target") or {}, deployment.get("onnx") or {}
    dla = target.get("dla_cores")
    lines = [
        "",
        "## Deployment target",
        "",
        f"Made for **{_cell(target.get('name'))}**: {_cell(target.get('description'))} "
        f"(TensorRT {_cell(target.get('tensorrt'))}, ONNX opset up to {_cell(target.get('max_opset'))}, "
        f"compute capability {_cell(target.get('compute_capability'))}"
        + (f", up to {dla} DLA cores" if dla else "")
        + ")."
        + (
            f" model.onnx is opset {onnx['opset']} ({_cell(onnx.get('exporter'))} exporter)."
            if onnx.get("opset")
            else ""
        )
        + " Engines are built on the device: `edgekd engine BUNDLE --precision fp16|int8`.",
    ]
    parser = deployment.get("parser") or {}
    rules = deployment.get("rules") or {}
    line = next(iter(rules.values()), {}).get("line", target.get("rules"))
    parse_title = (
        f"{parser['name']} parse and build ({parser.get('compute_capability')})"
        if parser.get("name")
        else "TensorRT parser"
    )
    label = f"TensorRT {line}" + ("" if "." in str(line) else ".x")
    lines += ["", f"| file | {_cell(label)} rules | {_cell(parse_title)} |", "|---|---|---|"]
    for name, result in rules.items():
        first = (result.get("problems") or [{}])[0]
        rule = (
            "pass"
            if result.get("passed")
            else f"**FAIL** ({result.get('count')}): node {_oneline(first.get('node'))}: "
            f"{_oneline(first.get('rule'))}: {_oneline(first.get('detail'))}"
        )
        parsed = (parser.get("files") or {}).get(name)
        if parsed is None:
            built = "not run"
        elif parsed.get("built"):
            built = f"parsed and built ({_num(parsed.get('engine_bytes', 0) / 1e6, 1)} MB engine)"
        else:
            built = f"**FAIL**: {_oneline(parsed.get('error'))[:200]}"
        lines.append(f"| {_cell(name)} | {rule} | {built} |")
    lines.append("")
    lines.append(_oneline(parser.get("note") or parser.get("skipped") or "") or "-")
    caches = [
        (n, e["export"]["calibration_cache"])
        for n, e in card["models"].items()
        if isinstance(e.get("export"), dict) and isinstance(e["export"].get("calibration_cache"), dict)
    ]
    for name, cache in caches:
        lines.append("")
        lines.append(
            f"calibration.cache ({name}): "
            + (
                f"the activation scales of {_oneline(cache.get('scales_from'))}, "
                f"{cache.get('tensors')} tensors"
                if cache.get("file")
                else f"not shipped: {_oneline(cache.get('left_out'))}"
            )
            + "."
        )
    return lines


def _oneline(value) -> str:
    """A card string on one table line: whitespace collapsed, pipes escaped."""
    return _cell(" ".join(str(value).split())) if value is not None else "-"


def _gates(card: dict) -> list[str]:
    lines = ["", "## Release gates", ""]
    if not card.get("gates"):
        return lines + ["No gates configured (set `card.gates` in the recipe)."]
    lines += ["| gate | artifact | metric | value | threshold | result |", "|---|---|---|---|---|---|"]
    for gate in card["gates"]:
        result = "pass" if gate["passed"] else "warn" if gate.get("on_miss") == "warn" else "**FAIL**"
        lines.append(
            f"| {gate['name']} | {gate['artifact']} | {gate.get('metric', '-')} | "
            f"{_num(gate['value'], 4)} | {gate['comparison']} {gate['threshold']} | "
            f"{result} |"
        )
    return lines


def _bench(card: dict) -> list[str]:
    lines = ["", "## Bench results", ""]
    rows = bench_rows(card)
    if not rows:
        return lines + ["None yet: run `edgekd bench BUNDLE --update-card` on the device."]
    return lines + pipe_table(rows, bench_headers())


_PLOT = re.compile(r"^plots/[A-Za-z0-9][A-Za-z0-9._-]*\.png$")  # the bundle's own, by name


def _plots(card: dict) -> list[str]:
    """An image line per plot of the bundle (``plots/<name>.png``); any other entry is named as
    text, never made an image (it could be a remote URL)."""
    if not card.get("plots"):
        return []
    lines = ["", "## Plots", ""]
    shown = _compression_plots(card)
    for path in card["plots"]:
        if path in shown:  # drawn in the compression section
            continue
        if not _PLOT.match(path):
            lines += [f"- not shown: {path} (not a plot of this bundle)", ""]
            continue
        title = path.rsplit("/", 1)[-1].removesuffix(".png").replace("_", " ")
        lines += [f"![{title}]({path})", ""]
    return lines[:-1]


def _limitations(card: dict) -> list[str]:
    data = card["data"]
    lines = ["", "## Limitations", ""]
    if data.get("synthetic"):
        lines.append(
            "- The data is synthetic (generated shapes); the numbers show the pipeline and "
            "the direction of effects, not performance on real images."
        )
    if card.get("by_attribute"):
        lines.append(
            f"- Fairness is measured over the intersections of {data['protected_attribute']} "
            "and for each attribute alone; other attributes are not covered."
        )
    else:
        lines.append(
            f"- Fairness is measured for one protected attribute, {data['protected_attribute']}, "
            "with the groups above; other attributes and intersections are not covered."
        )
    counts = data.get("test_counts_by_group") or {}
    if counts:
        lines.append(
            f"- The smallest group has {min(counts.values())} test images; per-class "
            "numbers of small cells are noisy (see the intervals and tests)."
        )
    bad = sum((data.get("skipped_bad_images") or {}).values())
    if bad:
        lines.append(
            f"- {bad} image files could not be read and were left out "
            f"({', '.join(f'{k} {v}' for k, v in data['skipped_bad_images'].items())})."
        )
    unknown = sum((data.get("excluded_unknown_gender") or {}).values())
    if unknown:
        lines.append(
            f"- {unknown} samples with no annotated gender were excluded "
            f"({', '.join(f'{k} {v}' for k, v in data['excluded_unknown_gender'].items())})."
        )
    unmarked = sum((data.get("excluded_unknown_attribute") or {}).values())
    if unmarked:
        lines.append(
            f"- {unmarked} samples with a protected attribute not annotated were excluded "
            f"({', '.join(f'{k} {v}' for k, v in data['excluded_unknown_attribute'].items())})."
        )
    lines += [f"- {warning}" for warning in data.get("warnings") or []]
    for skipped in card.get("skipped_artifacts") or []:
        lines.append(f"- Not shipped: {skipped.get('name')}: {skipped.get('skipped')}")
    return lines


def _provenance(card: dict) -> list[str]:
    prov = card["provenance"]
    lines = [
        "",
        "## Provenance",
        "",
        f"- recipe sha256: `{prov['recipe_sha256']}`",
        f"- seed: {prov['seed']}",
    ]
    if prov.get("data"):
        lines.append(f"- data: {prov['data']}")
    for name, key in (prov.get("stage_keys") or {}).items():
        lines.append(f"- stage {name}: `{key}`")
    lines += [
        "- versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        "- sha256 and size of every file: `manifest.json` (check with `edgekd verify`)",
        "",
    ]
    return lines


def render_markdown(card: dict, *, fold_rest: bool = False) -> str:
    """The whole ``card.md``. Every string of the card is escaped once, before any section
    places it (:func:`edgekd.card.escape.markdown_card`), and the front matter is YAML made
    from one-line strings: no card string can start a line, close a cell or be markup.

    ``fold_rest`` (card.html) puts the rows a long table leaves out in a ``<details>`` block
    after it; card.md counts them instead (card.json has them all)."""
    front = yaml.safe_dump(front_matter(plain_card(card)), sort_keys=False).rstrip()
    card = markdown_card(card)
    lines = ["---", front, "---", "", f"# {card['name']} {card['version']}", ""]
    for section in (
        _intro,
        _distillation,
        _checkpoints,
        _data,
        _headline,
        _disparity_table,
        _student_by_group,
        _by_attribute,
        _significance,
    ):
        lines += section(card)
    lines += _compression(card, fold_rest=fold_rest)
    for section in (_deployment, _gates, _bench, _plots, _limitations, _provenance):
        lines += section(card)
    return "\n".join(lines)
