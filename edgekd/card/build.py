"""Assemble the fairness card (``card.json``, schema ``edgekd.card/v1``) of a build.

The card holds, per model and artifact, the metrics measured on the test split through that
artifact's own runtime with bootstrap confidence intervals; the class-wise change from teacher
and from baseline to the distilled student with McNemar tests (Benjamini-Hochberg corrected; a
class counts as changed when significant and moved by ``card.min_effect``); the release gates;
the license and Hub dataset id of the model card (:mod:`edgekd.card.hub`); and provenance, with
no local path (:func:`public_description`). It holds no timestamp, so the same recipe and seed
give the same card.
"""

from __future__ import annotations

from pathlib import PurePath

from pydantic import Field, ValidationInfo, field_validator

from edgekd.card.attributes import by_attribute, small_cells, small_groups
from edgekd.card.compression import SECTION, step_entry
from edgekd.card.evaluation import DEFAULT_MIN_SUPPORT, Evaluation
from edgekd.card.flipped import flipped_examples, flipped_plot_name
from edgekd.card.gates import GatesConfig, evaluate_gates
from edgekd.card.hub import DEFAULT_LICENSE, check_dataset_id, check_license
from edgekd.card.plots import COMPRESSION_PLOT, PLOT_NAMES
from edgekd.config import Section
from edgekd.fairness.bootstrap import bootstrap_intervals
from edgekd.fairness.metric_table import difference
from edgekd.fairness.significance import DEFAULT_MIN_EFFECT, classwise_mcnemar, welch_from_metrics
from edgekd.versions import library_versions

__all__ = [
    "CARD_SCHEMA",
    "CardConfig",
    "build_card",
    "class_change",
    "seed_significance",
    "public_description",
    "compression_by_group",
]

CARD_SCHEMA = "edgekd.card/v1"


class CardConfig(Section):
    """``card``: the statistics on the fairness card and the release gates."""

    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="false discovery rate of the class tests")
    bootstrap_resamples: int = Field(1000, ge=0, le=100_000, description="0 turns intervals off")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    min_support: int = Field(
        DEFAULT_MIN_SUPPORT,
        ge=1,
        le=1_000_000,
        description="fewest test images of a (class, group) cell (of a group, for DPD) whose rate "
        "counts in the disparities and their means; smaller cells are named on the card",
    )
    min_effect: float = Field(
        DEFAULT_MIN_EFFECT,
        ge=0.0,
        le=1.0,
        description="smallest |recall change| of a class that counts as changed by distillation "
        "(besides being significant); 0 counts every significant change",
    )
    license: str = Field(
        DEFAULT_LICENSE,
        description="the model's license on the Hugging Face Hub "
        "(a Hub license id: apache-2.0, mit, other, ...)",
    )
    license_name: str | None = Field(
        None, max_length=200, validate_default=True, description="the license's name when license is other"
    )
    dataset_id: str | None = Field(
        None,
        description="the Hugging Face Hub dataset the data is (owner/name); named in the card's "
        "datasets and model-index",
    )
    gates: GatesConfig = Field(default_factory=GatesConfig)

    @field_validator("license")
    @classmethod
    def _hub_license(cls, value: str) -> str:
        return check_license(value)

    @field_validator("dataset_id")
    @classmethod
    def _hub_dataset(cls, value: str | None) -> str | None:
        return check_dataset_id(value)

    @field_validator("license_name")
    @classmethod
    def _named_other(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("license") == "other" and not value:
            raise ValueError(
                "card.license is other: name the license here (the Hub asks for it, "
                "with the license's text in a LICENSE file)"
            )
        return value


_LOCAL_KEYS = ("root", "path")  # where a data source keeps the folder or file it read


def public_description(description: dict) -> dict:
    """A data description without the local paths it was read from: each ``root`` / ``path``
    becomes its last component (``/home/ana/data/shop`` -> ``shop``), and so does every mention
    of it in the description's strings (the summary, the bad-image reasons). A card is published;
    the folder layout of the machine that built it is not part of it."""
    fallback = str(description.get("source", "data"))
    places = {
        str(description[key]): PurePath(description[key]).name or fallback
        for key in _LOCAL_KEYS
        if isinstance(description.get(key), str) and description[key]
    }
    longest_first = sorted(places.items(), key=lambda item: -len(item[0]))

    def scrub(value):
        if isinstance(value, str):
            for full, name in longest_first:
                value = value.replace(full, name)
            return value
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [scrub(item) for item in value]
        return value

    return scrub(description)


def class_change(before: dict, after: dict) -> dict:
    """Per-class change in recall (overall and per group) from ``before`` to ``after`` metrics."""
    rows = []
    for b, a in zip(before["per_class"], after["per_class"]):
        rows.append(
            {
                "class": a["class"],
                "recall_change": difference(a["recall"], b["recall"]),
                "recall_change_by_group": {
                    g: difference(a["recall_by_group"][g], b["recall_by_group"][g])
                    for g in a["recall_by_group"]
                },
                "disparity_change": difference(a["disparity"], b["disparity"]),
            }
        )
    return {
        "top1_change": difference(after["top1"], before["top1"]),
        "mean_abs_disparity_change": difference(after["mean_abs_disparity"], before["mean_abs_disparity"]),
        "per_class": rows,
    }


def seed_significance(
    seed_metrics: dict[str, list[dict]],
    *,
    class_names: list[str],
    alpha: float = 0.05,
    seeds: list[int] | None = None,
) -> dict:
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
                seed_metrics[before], seed_metrics["student"], class_names=class_names, alpha=alpha
            )
    return out


def compression_by_group(
    data,
    evaluations: dict[str, Evaluation],
    *,
    alpha: float,
    min_effect: float,
    min_support: int,
    images_at_hand: bool = True,
) -> dict:
    """``card["compression_by_group"]`` of a build: the effect of every step of the chain, per
    (class, group) cell and per group (:func:`edgekd.card.compression.step_entry`), in chain
    order: teacher -> student, baseline -> student, then student -> every exported artifact (the
    evaluations with a ``vs_student``), in card order.

    Each artifact's step also names a few of the images it changed (``examples``:
    :func:`edgekd.card.flipped.flipped_examples`) and the grid that shows them
    (``examples.plot``, drawn with the bundle's plots), or, without test images at hand
    (``images_at_hand`` false), a note saying so.
    """
    labels, groups = data.test.labels, data.test.groups
    class_names, group_names = list(data.class_names), list(data.group_names)
    pairs: list[tuple[str, str]] = [
        (before, "student") for before in ("teacher", "baseline") if before in evaluations
    ]
    artifacts = [name for name, e in evaluations.items() if e.vs_student is not None]
    pairs += [("student", name) for name in artifacts]
    steps = []
    for before, after in pairs:
        before_pred, after_pred = evaluations[before].predictions, evaluations[after].predictions
        entry = step_entry(
            before,
            after,
            labels,
            before_pred,
            after_pred,
            groups,
            class_names=class_names,
            group_names=group_names,
            alpha=alpha,
            min_effect=min_effect,
            min_support=int(min_support),
            measured_on="build",
        )
        if after in artifacts:
            cells = flipped_examples(
                labels,
                before_pred,
                after_pred,
                groups,
                entry["per_cell"],
                class_names=class_names,
                group_names=group_names,
            )
            entry["examples"] = {
                "plot": flipped_plot_name(after) if cells and images_at_hand else None,
                "cells": cells,
            }
            if cells and not images_at_hand:
                entry["examples"]["note"] = "no test images at hand to draw from at build time"
        steps.append(entry)
    return {
        "alpha": alpha,
        "min_effect": min_effect,
        "min_support": int(min_support),
        "plot": f"plots/{COMPRESSION_PLOT}",
        "steps": steps,
    }


def build_card(
    recipe,
    data,
    evaluations: dict[str, Evaluation],
    *,
    seed_metrics: dict[str, list[dict]] | None = None,
    seeds: list[int] | None = None,
    learned: dict | None = None,
    debias_epochs: dict[str, list[dict]] | None = None,
    skipped_artifacts: list[dict] | None = None,
    deployment: dict | None = None,
) -> dict:
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
            raise ValueError(
                f"{name} was evaluated with min_support {evaluation.min_support}, the "
                f"card's is {cfg.min_support}"
            )
        models[name] = evaluation.card_entry()
        if cfg.bootstrap_resamples:
            models[name]["ci"] = bootstrap_intervals(
                labels,
                evaluation.predictions,
                groups,
                num_classes=data.num_classes,
                num_groups=len(data.group_names),
                resamples=cfg.bootstrap_resamples,
                level=cfg.confidence,
                seed=recipe.seed,
                min_support=cfg.min_support,
            )
    student = evaluations["student"]
    significance = {
        f"{before}_to_student": classwise_mcnemar(
            labels,
            evaluations[before].predictions,
            student.predictions,
            groups,
            class_names=data.class_names,
            group_names=data.group_names,
            alpha=cfg.alpha,
            min_effect=cfg.min_effect,
        )
        for before in ("teacher", "baseline")
    }
    if seed_metrics:
        significance["across_seeds"] = seed_significance(
            seed_metrics, class_names=data.class_names, alpha=cfg.alpha, seeds=seeds
        )

    onnx_check = evaluations["onnx"].details["export"]["argmax_agreement"]
    gates = [
        {
            "name": "onnx_matches_torch",
            "artifact": "onnx",
            "metric": "argmax agreement with the torch student",
            "threshold": recipe.export.onnx.min_agreement,
            "comparison": ">=",
            "value": onnx_check,
            "passed": onnx_check >= recipe.export.onnx.min_agreement,
        }
    ]
    description = public_description(data.description)
    card = {
        "schema": CARD_SCHEMA,
        "name": recipe.name,
        "version": recipe.version,
        "task": {"type": "image-classification", "classes": data.class_names},
        "license": cfg.license,
        **({"license_name": cfg.license_name} if cfg.license_name else {}),
        "data": {
            **description,
            **({"dataset_id": cfg.dataset_id} if cfg.dataset_id else {}),
            "protected_attribute": data.protected_attribute,
            "groups": data.group_names,
            "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "test_counts_by_group": {
                g: int((data.test.groups == k).sum()) for k, g in enumerate(data.group_names)
            },
            "min_support": cfg.min_support,
            "small_cells": small_cells(
                labels,
                groups,
                class_names=data.class_names,
                group_names=data.group_names,
                min_support=cfg.min_support,
            ),
            "small_groups": small_groups(groups, group_names=data.group_names, min_support=cfg.min_support),
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
            "data": description.get("summary"),
            "versions": library_versions(),
            "stage_keys": {
                name: e.details["stage_key"] for name, e in evaluations.items() if "stage_key" in e.details
            },
        },
        "skipped_artifacts": list(skipped_artifacts or []),
        "debias": {
            **recipe.debias.model_dump(mode="json", by_alias=True),
            "epochs": dict(debias_epochs or {}),
        },
        "plots": [f"plots/{name}" for name in PLOT_NAMES],
    }
    images = getattr(data.test, "images", None)
    card[SECTION] = compression_by_group(
        data,
        evaluations,
        alpha=cfg.alpha,
        min_effect=cfg.min_effect,
        min_support=cfg.min_support,
        images_at_hand=images is not None and len(images) > 0,
    )
    card["plots"] += [card[SECTION]["plot"]] + [
        step["examples"]["plot"]
        for step in card[SECTION]["steps"]
        if (step.get("examples") or {}).get("plot")
    ]
    if deployment is not None:
        from edgekd.export.tensorrt_check import tensorrt_gates

        card["deployment"] = deployment
        gates += tensorrt_gates(deployment, {e.file: name for name, e in evaluations.items() if e.file})
    attributes = by_attribute(data, evaluations, min_support=cfg.min_support)
    if attributes:  # several protected attributes: each alone, besides their intersections
        card["by_attribute"] = attributes
    card["gates"] += evaluate_gates(card, cfg.gates.model_dump())
    return card
