"""Assemble the fairness card (``card.json``, schema ``edgekd.card/v1``) of a build.

The card holds, per model and artifact, the metrics measured on the test split through that
artifact's own runtime with bootstrap confidence intervals; the class-wise change from teacher
and from baseline to the distilled student with McNemar tests (Benjamini-Hochberg corrected);
the release gates; and provenance. It holds no timestamp, so the same recipe and seed
give the same card.
"""

from __future__ import annotations

import numpy as np

from edgekd.card.gates import evaluate_gates
from edgekd.fairness.bootstrap import bootstrap_intervals
from edgekd.fairness.significance import classwise_mcnemar
from edgekd.recipe import recipe_hash
from edgekd.versions import library_versions

__all__ = ["CARD_SCHEMA", "build_card", "class_change"]

CARD_SCHEMA = "edgekd.card/v1"


def class_change(before: dict, after: dict) -> dict:
    """Per-class change in recall (overall and per group) from ``before`` to ``after`` metrics."""
    rows = []
    for b, a in zip(before["per_class"], after["per_class"]):
        rows.append({
            "class": a["class"],
            "recall_change": _delta(a["recall"], b["recall"]),
            "recall_change_by_group": {
                g: _delta(a["recall_by_group"][g], b["recall_by_group"][g]) for g in a["recall_by_group"]
            },
            "disparity_change": _delta(a["disparity"], b["disparity"]),
        })
    return {
        "top1_change": _delta(after["top1"], before["top1"]),
        "mean_abs_disparity_change": _delta(after["mean_abs_disparity"], before["mean_abs_disparity"]),
        "per_class": rows,
    }


def _delta(after, before):
    return None if after is None or before is None else float(after) - float(before)


def _drift(reference: dict, artifact: dict) -> dict:
    """How an exported artifact's behaviour differs from the torch model it came from."""
    return {
        "prediction_agreement": float(np.mean(reference["predictions"] == artifact["predictions"])),
        "top1_change": _delta(artifact["metrics"]["top1"], reference["metrics"]["top1"]),
        "mean_abs_disparity_change": _delta(artifact["metrics"]["mean_abs_disparity"],
                                            reference["metrics"]["mean_abs_disparity"]),
    }


def build_card(recipe, data, evaluations: dict[str, dict]) -> dict:
    """The card for a build.

    ``evaluations`` maps a model or artifact name (teacher, baseline, student, onnx, ...) to its
    entry: ``kind`` (torch / onnx), ``metrics`` from
    :func:`edgekd.fairness.metrics.evaluate_predictions`, ``predictions`` and descriptive fields.
    """
    models = {}
    for name, entry in evaluations.items():
        public = {k: v for k, v in entry.items() if k not in ("predictions", "path", "status")}
        if entry["kind"] != "torch":
            public["vs_student"] = _drift(evaluations["student"], entry)
        models[name] = public

    cfg = recipe.card
    labels, groups = data.test.labels, data.test.groups
    if cfg.bootstrap_resamples:
        for name, entry in evaluations.items():
            models[name]["ci"] = bootstrap_intervals(
                labels, entry["predictions"], groups, num_classes=data.num_classes,
                num_groups=len(data.group_names), resamples=cfg.bootstrap_resamples,
                level=cfg.confidence, seed=recipe.seed)
    significance = {
        f"{before}_to_student": classwise_mcnemar(
            labels, evaluations[before]["predictions"], evaluations["student"]["predictions"], groups,
            class_names=data.class_names, group_names=data.group_names, alpha=cfg.alpha)
        for before in ("teacher", "baseline")
    }

    onnx_check = evaluations["onnx"]["export"]["argmax_agreement"]
    gates = [{
        "name": "onnx_matches_torch",
        "artifact": "onnx",
        "metric": "argmax agreement with the torch student",
        "threshold": recipe.export.onnx.min_agreement,
        "comparison": ">=",
        "value": onnx_check,
        "passed": onnx_check >= recipe.export.onnx.min_agreement,
    }]
    student = evaluations["student"]["metrics"]
    card = {
        "schema": CARD_SCHEMA,
        "name": recipe.name,
        "version": recipe.version,
        "task": {"type": "image-classification", "classes": data.class_names},
        "data": {
            **data.description,
            "protected_attribute": data.protected_attribute,
            "groups": data.group_names,
            "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "test_counts_by_group": {
                g: int((data.test.groups == k).sum()) for k, g in enumerate(data.group_names)
            },
        },
        "distillation": recipe.distill.model_dump(mode="json"),
        "models": models,
        "comparisons": {
            "teacher_to_student": class_change(evaluations["teacher"]["metrics"], student),
            "baseline_to_student": class_change(evaluations["baseline"]["metrics"], student),
        },
        "significance": significance,
        "bench": {},
        "gates": gates,
        "provenance": {
            "recipe_sha256": recipe_hash(recipe),
            "seed": recipe.seed,
            "data": data.description.get("summary"),
            "versions": library_versions(),
            "stage_keys": {k: v["stage_key"] for k, v in evaluations.items() if "stage_key" in v},
        },
    }
    card["gates"] += evaluate_gates(card, cfg.gates.model_dump())
    return card
