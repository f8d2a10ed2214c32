"""The training stages of a build: teacher, baseline and distilled student, one loop, three
objectives (and, for ``seeds:``, the same once per seed).

Each network trains in its own hash-keyed stage (:class:`~edgekd.stages.Stage`): a stage whose
inputs did not change is reused, an interrupted one resumes from its last finished epoch. The
teacher, baseline and teacher-outputs stages live in ``shared_dir`` (a sweep shares them between
its points), the student in ``run_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.context import BuildContext
from edgekd.data import PIXEL_NEUTRAL, DataSplits
from edgekd.errors import EdgeKDError
from edgekd.fairness.metrics import evaluate_predictions
from edgekd.files import read_json, sha256_file, write_json
from edgekd.memory import release_free_memory
from edgekd.recipe import Recipe
from edgekd.stages import Stage

__all__ = [
    "Trained",
    "train_models",
    "train_stage",
    "teacher_outputs_inputs",
    "seed_study",
    "model_key",
    "debias_history",
]


@dataclass
class Trained:
    """A trained teacher, baseline or student: its network, stage, section of the recipe, test
    logits, per-epoch history and what its objective learned."""

    model: object
    stage: Stage
    config: object
    status: str
    test_logits: np.ndarray
    history: list[dict]
    objective: dict = field(default_factory=dict)


def train_models(
    recipe: Recipe, data: DataSplits, *, run_dir: Path, shared_dir: Path, seed: int, ctx: BuildContext
) -> dict[str, Trained]:
    """Teacher, baseline and distilled student: one training loop, three objectives.

    ``seed`` seeds the weights, the batch order and the augmentation; the data stay those of
    ``recipe.seed``. It is part of each stage's key only when it differs from ``recipe.seed``,
    so single-seed builds keep their keys.
    """
    from edgekd.debias import with_debiasing
    from edgekd.distill import CrossEntropy, TeacherOutputs, build_objective

    data_key = {"data": recipe.data.model_dump(mode="json", exclude=PIXEL_NEUTRAL), "seed": recipe.seed}
    if seed != recipe.seed:
        data_key["train_seed"] = seed

    def train(
        name: str, cfg, objective, *, extra: dict, teacher_outputs=None, cache_teacher: bool = True
    ) -> Trained:
        inputs = {**data_key, "model": model_key(cfg), **extra}
        where = run_dir if name == "student" else shared_dir
        return train_stage(
            Stage(where, name, inputs),
            cfg,
            objective,
            data,
            seed=seed,
            teacher_outputs=teacher_outputs,
            cache_teacher=cache_teacher,
            ctx=ctx,
        )

    def debiased(objective, stage: str) -> tuple[object, dict]:
        if not recipe.debias.active or stage not in recipe.debias.apply_to:
            return objective, {}
        settings = recipe.debias.model_dump(mode="json", by_alias=True, exclude={"apply_to"})
        return with_debiasing(objective, recipe.debias), {"debias": settings}

    # label_smoothing is each network's: the baseline's cross-entropy and the label term of the
    # student's distillation loss take the student's, so the two are compared on the same targets.
    teacher = train(
        "teacher", recipe.teacher, CrossEntropy(label_smoothing=recipe.teacher.label_smoothing), extra={}
    )
    baseline_objective, baseline_extra = debiased(
        CrossEntropy(label_smoothing=recipe.student.label_smoothing), "baseline"
    )
    baseline = train("baseline", recipe.student, baseline_objective, extra=baseline_extra)
    outputs_stage = Stage(
        shared_dir, "teacher_outputs", teacher_outputs_inputs(data_key, teacher.stage.key, recipe.student)
    )
    if ctx.is_main:
        outputs_stage.start()  # keeps the files of the same teacher and data, clears stale ones
    teacher_outputs = TeacherOutputs(teacher.model, data, cache_dir=outputs_stage.dir, dist=ctx.dist)
    student_objective, student_extra = debiased(
        build_objective(recipe.distill, label_smoothing=recipe.student.label_smoothing), "student"
    )
    student = train(
        "student",
        recipe.student,
        student_objective,
        extra={
            "distill": recipe.distill.model_dump(mode="json"),
            "teacher": teacher.stage.key,
            **student_extra,
        },
        teacher_outputs=teacher_outputs,
        cache_teacher=recipe.distill.cache_teacher,
    )
    return {"teacher": teacher, "baseline": baseline, "student": student}


def teacher_outputs_inputs(data_key: dict, teacher_key: str, student_cfg) -> dict:
    """What the teacher-outputs stage depends on: the data and training seed (``data_key``), the
    teacher, and the student's augmentation when it is on (the cached outputs are the teacher's
    on the student's augmented images, so other settings must never read them)."""
    inputs = {**data_key, "teacher": teacher_key}
    if student_cfg.augment.enabled:
        inputs["augment"] = student_cfg.augment.effective()
    return inputs


def seed_study(
    recipe: Recipe, data: DataSplits, run_dir: Path, main_models: dict[str, Trained], *, ctx: BuildContext
) -> dict[str, list[dict]] | None:
    """``recipe.seeds``: teacher, baseline and student trained once per seed (under
    ``run_dir/seeds/<seed>``, each stage reused like any other), evaluated on the same test
    split, for the card's Welch test across seeds. The shipped models are those of
    ``recipe.seed``, which counts as one of the seeds when listed."""
    if not recipe.seeds:
        return None
    per_seed: dict[str, list[dict]] = {"teacher": [], "baseline": [], "student": []}
    for seed in recipe.seeds:
        if seed == recipe.seed:
            models = main_models
        else:
            ctx.log(f"seed study: seed {seed} ({recipe.seeds.index(seed) + 1} of {len(recipe.seeds)})")
            where = run_dir / "seeds" / str(seed)
            models = train_models(recipe, data, run_dir=where, shared_dir=where, seed=seed, ctx=ctx)
        if ctx.is_main:  # the other ranks hold no test predictions
            for name, trained in models.items():
                per_seed[name].append(
                    evaluate_predictions(
                        data.test.labels,
                        trained.test_logits.argmax(1),
                        data.test.groups,
                        class_names=data.class_names,
                        group_names=data.group_names,
                        min_support=recipe.card.min_support,
                    )
                )
    return per_seed


def debias_history(history: list[dict]) -> list[dict]:
    keys = ("epoch", "adversary_top1", "adversary_reference", "debias_lambda", "val_mean_abs_disparity")
    return [{k: r.get(k) for k in keys} for r in history]


def model_key(cfg) -> dict:
    key = cfg.model_dump(mode="json", exclude={"augment"})
    if cfg.augment.enabled:  # only what acts; when off, the key is as before augmentation existed
        key["augment"] = cfg.augment.effective()
    if cfg.checkpoint is not None:
        key["checkpoint"] = sha256_file(cfg.checkpoint)  # the weights, not where they live
    return key


def train_stage(
    stage: Stage,
    cfg,
    objective,
    data: DataSplits,
    *,
    seed: int,
    teacher_outputs,
    cache_teacher: bool,
    ctx: BuildContext,
) -> Trained:
    """Train (or reuse, or resume) one network in its stage with ``objective``; the loop is
    :func:`edgekd.train.fit`, the same for teacher, baseline and student."""
    import torch

    from edgekd.models import create_model
    from edgekd.models.tensors import predict_logits
    from edgekd.train import fit

    log, dist = ctx.log, ctx.dist
    section = "teacher" if stage.name == "teacher" else "student"
    if cfg.sync_batchnorm and dist.enabled and dist.device.type != "cuda":
        raise EdgeKDError(
            f"{section}.sync_batchnorm: SyncBatchNorm needs CUDA GPUs; this torchrun "
            "job runs on CPU (gloo), so set it to false"
        )
    torch.manual_seed(seed)
    done = dist.broadcast(stage.done if dist.is_main else None)
    # a reused stage's best.pt replaces the first weights: they are not fetched or read
    model = create_model(cfg, data.num_classes, key=section, load=not done, log=log)
    if done:
        reused = None
        if dist.is_main:
            reused = (
                torch.load(stage.path("best.pt"), map_location="cpu", weights_only=True)["model"],
                np.load(stage.path("test_predictions.npz"))["logits"],
                read_json(stage.path("history.json")),
                read_json(stage.path("objective.json")),
            )
        weights, logits, history, summary = dist.broadcast(reused)
        model.load_state_dict(weights)
        model.eval()
        log(f"{stage.name}: reused (inputs unchanged, key {stage.key[:12]})")
        return Trained(model, stage, cfg, "reused", logits, history, summary)
    resumed = dist.broadcast(stage.start() and stage.path("last.pt").exists() if dist.is_main else None)
    log(
        f"{stage.name}: training {cfg.arch} for {cfg.epochs} epochs"
        + (" (resuming)" if resumed else "")
        + (f" on {dist.world_size} processes" if dist.enabled else "")
    )
    history = fit(
        model,
        objective,
        data,
        cfg,
        stage,
        seed=seed,
        teacher_outputs=teacher_outputs,
        cache_teacher=cache_teacher,
        on_epoch_end=ctx.on_epoch_end,
        log=log,
        dist=dist,
    )
    logits = np.zeros((0, data.num_classes), dtype=np.float32)
    if dist.is_main:
        if cfg.epochs == 0:
            torch.save({"model": model.state_dict(), "epoch": 0}, stage.path("best.pt"))
        with ctx.step(f"{stage.name}: predicting {len(data.test)} test images"):
            logits = predict_logits(model, data.test.images, data.mean, data.std)
        np.savez(
            stage.path("test_predictions.npz"),
            logits=logits,
            labels=data.test.labels,
            groups=data.test.groups,
        )
        write_json(stage.path("objective.json"), objective.summary())
        stage.finish({"epochs": cfg.epochs, "world_size": dist.world_size})
    release_free_memory()  # what training freed goes back, not into the next stage's peak
    return Trained(
        model, stage, cfg, "resumed" if resumed else "trained", logits, history, objective.summary()
    )
