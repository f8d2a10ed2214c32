"""One evaluation of a model or an exported artifact on the test split: the card's unit.

Teacher, baseline and student (torch) and every exported file (each run through its own runtime)
are described the same way, by :func:`evaluate`::

    student = evaluate("student", logits.argmax(1), data, kind="torch", size_bytes=...,
                       details={"arch": "efficientnet_b0", ...})
    int8 = evaluate("onnx_int8", predictions, data, kind="onnx", precision="int8",
                    file="model.int8.onnx", runtime="onnxruntime 1.20 (CPUExecutionProvider)",
                    size_bytes=..., reference=student)

``reference`` (the torch student an artifact came from) adds the drift: how often the artifact
predicts what the student predicts, and how its top-1 and mean |disparity| moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.fairness.metric_table import difference

__all__ = [
    "Evaluation",
    "evaluate",
    "evaluate_trained",
    "drift",
    "worst_agreement",
    "DEFAULT_MIN_SUPPORT",
    "CURVE_KEYS",
]

# What the card keeps of every training epoch (its training-curves plot draws them).
CURVE_KEYS = (
    "epoch",
    "train_loss",
    "train_top1",
    "val_top1",
    "val_mean_abs_disparity",
    "val_cell_balanced_accuracy",
    "val_worst_cell_recall",
    "adversary_top1",
    "adversary_reference",
)

# The card's default ``card.min_support``: a recall or rate resting on fewer test images is too
# noisy to compare (one image moves a recall of 20 by 0.05) and is left out of the gaps.
DEFAULT_MIN_SUPPORT = 20


@dataclass
class Evaluation:
    """A model or artifact, where and how it ran, and what it scored.

    ``predictions`` (one class per test image) and ``path`` stay in the build; everything else
    is the model's entry on the card (:meth:`card_entry`). ``details`` are the kind's own
    descriptive fields (a torch model's arch, parameters, stage key and training; an artifact's
    export settings), shown as they are.
    """

    name: str
    kind: str
    predictions: np.ndarray
    metrics: dict
    size_bytes: int
    precision: str | None = None
    runtime: str | None = None
    file: str | None = None
    path: Path | None = None
    details: dict = field(default_factory=dict)
    vs_student: dict | None = None
    min_support: int | None = None  # the card.min_support its metrics were measured with

    def card_entry(self) -> dict:
        """The entry under ``card["models"][name]`` (without the bootstrap intervals)."""
        entry = {"kind": self.kind}
        entry.update(
            {
                k: v
                for k, v in (("file", self.file), ("runtime", self.runtime), ("precision", self.precision))
                if v is not None
            }
        )
        entry["size_bytes"] = self.size_bytes
        entry.update(self.details)
        entry["metrics"] = self.metrics
        if self.vs_student is not None:
            entry["vs_student"] = self.vs_student
        return entry


def drift(
    reference: Evaluation,
    artifact: Evaluation,
    y_true: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    *,
    class_names: list[str] | None = None,
    group_names: list[str] | None = None,
    min_support: int = 1,
) -> dict:
    """How an exported artifact's behaviour differs from the torch model it came from: overall,
    and (given the test labels, groups and names) where it differs most
    (:func:`worst_agreement`)."""
    out = {
        "prediction_agreement": float(np.mean(reference.predictions == artifact.predictions)),
        "top1_change": difference(artifact.metrics["top1"], reference.metrics["top1"]),
        "mean_abs_disparity_change": difference(
            artifact.metrics["mean_abs_disparity"], reference.metrics["mean_abs_disparity"]
        ),
    }
    if y_true is not None and groups is not None and class_names and group_names:
        out.update(
            worst_agreement(
                y_true,
                reference.predictions,
                artifact.predictions,
                groups,
                class_names=class_names,
                group_names=group_names,
                min_support=min_support,
            )
        )
    return out


def worst_agreement(
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    groups: np.ndarray,
    *,
    class_names: list[str],
    group_names: list[str],
    min_support: int = 1,
) -> dict:
    """Where ``after`` departs most from ``before`` on the test split, among the cells and groups
    with at least ``min_support`` images (the card's ``min_support``): the summary beside an
    artifact's overall agreement that the gates ``min_group_agreement_vs_student`` and
    ``max_group_recall_drop_vs_student`` read.

    Returns ``worst_cell_agreement`` ``{class, group, agreement, images}``,
    ``worst_group_agreement`` ``{group, agreement, images}`` and ``worst_group_accuracy_change``
    ``{group, accuracy_change}`` (the most negative change of a group's accuracy, after minus
    before), each None when no cell or group has that many images. Numpy only: the device
    computes the same for an engine.

    >>> worst_agreement([0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1],
    ...                 class_names=["a", "b"], group_names=["x", "y"])["worst_group_accuracy_change"]
    {'group': 'x', 'accuracy_change': -0.5}
    """
    from edgekd.fairness.compression import compression_effect

    support = max(int(min_support), 1)
    effect = compression_effect(
        y_true, before, after, groups, class_names=class_names, group_names=group_names, min_support=support
    )
    rows = [r for r in effect["per_group"] if r["images"] >= support]
    most_lost = min(rows, key=lambda r: r["accuracy_change"]) if rows else None
    return {
        "worst_cell_agreement": effect["worst_cell"],
        "worst_group_agreement": effect["worst_group"],
        "worst_group_accuracy_change": None
        if most_lost is None
        else {"group": most_lost["group"], "accuracy_change": most_lost["accuracy_change"]},
    }


def evaluate(
    name: str,
    predictions: np.ndarray,
    data,
    *,
    kind: str,
    size_bytes: int,
    precision: str | None = None,
    runtime: str | None = None,
    file: str | None = None,
    path: Path | None = None,
    details: dict | None = None,
    reference: Evaluation | None = None,
    min_support: int = DEFAULT_MIN_SUPPORT,
) -> Evaluation:
    """Score ``predictions`` on ``data``'s test split and describe what made them.

    Parameters
    ----------
    name : str
        The model's name on the card (teacher, baseline, student, onnx, onnx_int8, ...).
    predictions : int array (n,)
        The predicted class of every test image.
    data : DataSplits
        Test labels and groups, class and group names.
    kind, size_bytes, precision, runtime, file, path, details
        What the card says about the model or file (see :class:`Evaluation`).
    reference : Evaluation, optional
        The torch student an exported artifact came from; adds ``vs_student``.
    min_support : int
        The recipe's ``card.min_support``: the fewest test images a recall or rate may rest on
        to count in a disparity, DPD or EOD (:mod:`edgekd.fairness.metrics`). The headline DPD
        and EOD are cross-checked against fairlearn (:func:`edgekd.fairness.reference.cross_check`).
    """
    from edgekd.fairness.metrics import evaluate_predictions
    from edgekd.fairness.reference import cross_check  # fairlearn: build side only

    predictions = np.asarray(predictions)
    names = dict(class_names=data.class_names, group_names=data.group_names, min_support=min_support)
    metrics = evaluate_predictions(data.test.labels, predictions, data.test.groups, **names)
    cross_check(metrics, data.test.labels, predictions, data.test.groups, what=name, **names)
    evaluation = Evaluation(
        name=name,
        kind=kind,
        predictions=predictions,
        metrics=metrics,
        size_bytes=int(size_bytes),
        precision=precision,
        runtime=runtime,
        file=file,
        path=path,
        details=dict(details or {}),
        min_support=min_support,
    )
    if reference is not None:
        evaluation.vs_student = drift(
            reference,
            evaluation,
            data.test.labels,
            data.test.groups,
            class_names=data.class_names,
            group_names=data.group_names,
            min_support=min_support,
        )
    return evaluation


def evaluate_trained(name: str, trained, data, *, min_support: int) -> Evaluation:
    """A trained torch model's evaluation (``trained``: :class:`edgekd.train.stage.Trained`), with
    where it came from: arch, parameters, first weights, stage key, and its training (the epoch
    chosen and by what, precision, label smoothing, augmentation, the per-epoch curves)."""
    from edgekd.models import count_parameters, state_dict_bytes, weights_record
    from edgekd.train.selection import best_epoch, resolve_select_by

    cfg = trained.config
    select_by = resolve_select_by(cfg.select_by, len(data.group_names))
    best = best_epoch(trained.history, select_by)
    training = {
        "epochs": cfg.epochs,
        "selected_by": select_by,
        "best_epoch": best["epoch"] if best else 0,
        "best_val_top1": best["val_top1"] if best else None,
        "label_smoothing": cfg.label_smoothing,
    }
    if trained.history and trained.history[-1].get("precision"):
        training["precision"] = trained.history[-1]["precision"]
    if best and select_by != "top1":
        training[f"best_val_{select_by}"] = best.get(f"val_{select_by}")
    training["augment"] = cfg.augment.effective()
    training["history"] = [
        {key: record[key] for key in CURVE_KEYS if record.get(key) is not None} for record in trained.history
    ]
    return evaluate(
        name,
        trained.test_logits.argmax(1),
        data,
        kind="torch",
        size_bytes=state_dict_bytes(trained.model),
        details={
            "arch": cfg.arch,
            "parameters": count_parameters(trained.model),
            "weights": weights_record(cfg),
            "stage_key": trained.stage.key,
            "training": training,
        },
        min_support=min_support,
    )
