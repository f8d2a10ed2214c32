"""Assemble the fairness card (``card.json``, schema ``edgekd.card/v1``) of a build.

The card holds, per model and artifact, the metrics measured on the test split through that
artifact's own runtime with bootstrap confidence intervals; the class-wise change from teacher
and from baseline to the distilled student with McNemar tests (Benjamini-Hochberg corrected);
the release gates; and provenance. It holds no timestamp, so the same recipe and seed
give the same card.
"""

from __future__ import annotations

from pydantic import Field

from edgekd.card.attributes import by_attribute, small_cells, small_groups
from edgekd.card.evaluation import DEFAULT_MIN_SUPPORT, Evaluation
from edgekd.card.gates import GatesConfig, evaluate_gates
from edgekd.card.plots import PLOT_NAMES
from edgekd.config import Section
from edgekd.fairness.bootstrap import bootstrap_intervals
from edgekd.fairness.metric_table import difference
from edgekd.fairness.significance import classwise_mcnemar, welch_from_metrics
from edgekd.versions import library_versions

__all__ = ["CARD_SCHEMA", "CardConfig", "build_card", "class_change", "seed_significance"]

CARD_SCHEMA = "edgekd.card/v1"


class CardConfig(Section):
    """``card``: the statistics on the fairness card and the release gates."""

    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="false discovery rate of the class tests")
    bootstrap_resamples: int = Field(1000, ge=0, le=100_000, description="0 turns intervals off")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    min_support: int = Field(
        DEFAULT_MIN_SUPPORT, ge=1, le=1_000_000,
        description="fewest test images of a (class, group) cell (of a group, for DPD) whose rate "
                    "counts in the disparities and their means; smaller cells are named on the card")
    gates: GatesConfig = Field(default_factory=GatesConfig)


def class_change(before: dict, after: dict) -> dict:
    """Per-class change in recall (overall and per group) from ``before`` to ``after`` metrics."""
    rows = []
    for b, a in zip(before["per_class"], after["per_class"]):
        rows.append({
            "class": a["class"],
            "recall_change": difference(a["recall"], b["recall"]),
            "recall_change_by_group": {
                g: difference(a["recall_by_group"][g], b["recall_by_group"][g]) for g in a["recall_by_group"]
            },
            "disparity_change": difference(a["disparity"], b["disparity"]),
        })
    return {
        "top1_change": difference(after["top1"], before["top1"]),
        "mean_abs_disparity_change": difference(after["mean_abs_disparity"], before["mean_abs_disparity"]),
        "per_class": rows,
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


def build_card(recipe, data, evaluations: dict[str, Evaluation], *,
               seed_metrics: dict[str, list[dict]] | None = None, seeds: list[int] | None = None,
               learned: dict | None = None, debias_epochs: dict[str, list[dict]] | None = None,
               skipped_artifacts: list[dict] | None = None, deployment: dict | None = None) -> dict:
    """The whole card of a build; nothing is added to it later but bench results
    (:func:`edgekd.card.bench.add_bench_result`).

    Parameters
    ----------
    recipe : Recipe
        Its ``card`` section sets ``alpha``, the bootstrap and the gates.
    data : the loaded data source (test labels, groups, names, description).
    evaluations : dict of name -> Evaluation
        teacher, baseline, student, onnx, then every other exported artifact, in card order
        (:func:`edgekd.card.evaluation.evaluate`).
    seed_metrics, seeds : optional
        A multi-seed build's per-seed metrics of teacher, baseline and student (see
        :func:`seed_significance`) and the seeds, in the same order; adds the Welch test.
    learned : dict, optional
        What the student's objective learned (CTKD's temperature, adaptive KD's weights).
    debias_epochs : dict, optional
        Per debiased stage, the adversary's record of every epoch.
    skipped_artifacts : list of dict, optional
        Artifacts the recipe asked for that could not be built here, with the reason.
    deployment : dict, optional
        The deployment target and the TensorRT checks of the files meant for it
        (:func:`edgekd.export.tensorrt_check.check_for_tensorrt`); its results are gates.
    """
    cfg = recipe.card
    labels, groups = data.test.labels, data.test.groups
    models = {}
    for name, evaluation in evaluations.items():
        if evaluation.min_support not in (None, cfg.min_support):
            raise ValueError(f"{name} was evaluated with min_support {evaluation.min_support}, the "
                             f"card's is {cfg.min_support}")
        models[name] = evaluation.card_entry()
        if cfg.bootstrap_resamples:
            models[name]["ci"] = bootstrap_intervals(
                labels, evaluation.predictions, groups, num_classes=data.num_classes,
                num_groups=len(data.group_names), resamples=cfg.bootstrap_resamples,
                level=cfg.confidence, seed=recipe.seed, min_support=cfg.min_support)
    student = evaluations["student"]
    significance = {
        f"{before}_to_student": classwise_mcnemar(
            labels, evaluations[before].predictions, student.predictions, groups,
            class_names=data.class_names, group_names=data.group_names, alpha=cfg.alpha)
        for before in ("teacher", "baseline")
    }
    if seed_metrics:
        significance["across_seeds"] = seed_significance(
            seed_metrics, class_names=data.class_names, alpha=cfg.alpha, seeds=seeds)

    onnx_check = evaluations["onnx"].details["export"]["argmax_agreement"]
    gates = [{
        "name": "onnx_matches_torch",
        "artifact": "onnx",
        "metric": "argmax agreement with the torch student",
        "threshold": recipe.export.onnx.min_agreement,
        "comparison": ">=",
        "value": onnx_check,
        "passed": onnx_check >= recipe.export.onnx.min_agreement,
    }]
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
            "min_support": cfg.min_support,
            "small_cells": small_cells(labels, groups, class_names=data.class_names,
                                       group_names=data.group_names, min_support=cfg.min_support),
            "small_groups": small_groups(groups, group_names=data.group_names,
                                         min_support=cfg.min_support),
        },
        "distillation": {**recipe.distill.model_dump(mode="json"), "learned": learned or {}},
        "models": models,
        "comparisons": {
            "teacher_to_student": class_change(evaluations["teacher"].metrics, student.metrics),
            "baseline_to_student": class_change(evaluations["baseline"].metrics, student.metrics),
        },
        "significance": significance,
        "bench": {},
        "gates": gates,
        "provenance": {
            "recipe_sha256": recipe.sha256(),
            "seed": recipe.seed,
            "data": data.description.get("summary"),
            "versions": library_versions(),
            "stage_keys": {name: e.details["stage_key"] for name, e in evaluations.items()
                           if "stage_key" in e.details},
        },
        "skipped_artifacts": list(skipped_artifacts or []),
        "debias": {**recipe.debias.model_dump(mode="json", by_alias=True),
                   "epochs": dict(debias_epochs or {})},
        "plots": [f"plots/{name}" for name in PLOT_NAMES],
    }
    if deployment is not None:
        from edgekd.export.tensorrt_check import tensorrt_gates

        card["deployment"] = deployment
        gates += tensorrt_gates(deployment, {e.file: name for name, e in evaluations.items() if e.file})
    attributes = by_attribute(data, evaluations, min_support=cfg.min_support)
    if attributes:  # several protected attributes: each alone, besides their intersections
        card["by_attribute"] = attributes
    card["gates"] += evaluate_gates(card, cfg.gates.model_dump())
    return card
