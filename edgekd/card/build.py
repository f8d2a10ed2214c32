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
from edgekd.fairness.significance import classwise_mcnemar, welch_from_metrics
from edgekd.recipe import recipe_hash
from edgekd.versions import library_versions

__all__ = ["CARD_SCHEMA", "build_card", "class_change", "seed_significance"]

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


def seed_significance(seed_metrics: dict[str, list[dict]], *, class_names: list[str],
                      alpha: float = 0.05, seeds: list[int] | None = None) -> dict:
    """The multi-seed study's test for the card: Welch per class, teacher -> student and
    baseline -> student (each present pair), on per-seed metrics.

    ``seed_metrics`` maps ``teacher`` / ``baseline`` / ``student`` to one
    :func:`~edgekd.fairness.metrics.evaluate_predictions` dict per seed. The result goes to
    ``card["significance"]["across_seeds"]``.
    """
    out: dict = {"seeds": list(seeds) if seeds is not None else None}
    for before in ("teacher", "baseline"):
        if before in seed_metrics and "student" in seed_metrics:
            out[f"{before}_to_student"] = welch_from_metrics(
                seed_metrics[before], seed_metrics["student"], class_names=class_names, alpha=alpha)
    return out


def build_card(recipe, data, evaluations: dict[str, dict], *,
               seed_metrics: dict[str, list[dict]] | None = None,
               seeds: list[int] | None = None) -> dict:
    """The card for a build.

    Parameters
    ----------
    recipe : Recipe
        Its ``card`` section sets ``alpha``, the bootstrap and the gates.
    data : the loaded data source (test labels, groups, names, description).
    evaluations : dict
        Maps a model or artifact name (teacher, baseline, student, onnx, ...) to its entry:
        ``kind`` (torch / onnx), ``metrics`` from
        :func:`edgekd.fairness.metrics.evaluate_predictions`, ``predictions`` and descriptive
        fields.
    seed_metrics, seeds : optional
        A multi-seed build's per-seed metrics of teacher, baseline and student (see
        :func:`seed_significance`) and the seeds, in the same order; adds the Welch test.
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
    if seed_metrics:
        significance["across_seeds"] = seed_significance(
            seed_metrics, class_names=data.class_names, alpha=cfg.alpha, seeds=seeds)

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
