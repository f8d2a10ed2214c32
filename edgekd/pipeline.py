"""``edgekd build``: recipe -> data -> teacher -> baseline -> distilled student -> ONNX -> card -> bundle.

This module runs the stages in order; each lives with what it does: the training stages in
:mod:`edgekd.train.stage`, the evaluation of a trained model in :mod:`edgekd.card.evaluation`,
the export stages in :mod:`edgekd.export.stage`, the card in :mod:`edgekd.card.build` and the
bundle in :mod:`edgekd.bundle.write`. Every stage is hash-keyed (:mod:`edgekd.stages`): a stage
whose inputs did not change is reused, an interrupted one resumes from its last finished epoch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.card.gates import failed_gates
from edgekd.card.table import format_summary, summary_rows
from edgekd.context import BuildContext, step
from edgekd.errors import EdgeKDError
from edgekd.lock import run_locks
from edgekd.recipe import Recipe, load_recipe
from edgekd.threads import ThreadChoice, resolve_threads

__all__ = ["build", "build_recipe", "BuildResult"]


@dataclass
class BuildResult:
    """What a build produced: where, which stages ran, the card and its failed gates."""

    run_dir: Path
    bundle_dir: Path
    stage_status: dict[str, str]
    card: dict
    rows: list[dict] = field(default_factory=list)

    @property
    def failed_gates(self) -> list[dict]:
        return failed_gates(self.card)

    def summary(self) -> str:
        """What ``edgekd build`` prints at the end: one row per model and artifact (with its
        agreement with the student), what each stage did, every gate, the bundle's path."""
        return format_summary(self.card, self.stage_status, self.bundle_dir)


def build(
    recipe: str | Path | Recipe,
    *,
    out: str | Path = "runs",
    overrides: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
    on_epoch_end=None,
) -> BuildResult | None:
    """Run the whole pipeline for a recipe (a file, or a :class:`~edgekd.recipe.Recipe`); see the
    module docstring. ``overrides`` are ``--set`` items (``"distill.temperature=8"``) for a file.

    ``on_epoch_end(stage, epoch, record)`` is called after every training epoch (tests use it
    to interrupt a build).
    """
    threads = None
    if not isinstance(recipe, Recipe):
        # a mistake in the file is one line before torch loads; then the threads line, and the
        # arch names are checked against timm once torch is in (seconds on a busy machine)
        threads = _start(load_recipe(recipe, overrides, check_models=False), log)
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise EdgeKDError("overrides apply to a recipe file; set the fields of a Recipe object directly")
    return _run(recipe, out=out, log=log, on_epoch_end=on_epoch_end, threads=threads)


def build_recipe(
    recipe: Recipe,
    *,
    out: str | Path = "runs",
    log: Callable[[str], None] = print,
    on_epoch_end=None,
    run_dir: Path | None = None,
    shared_dir: Path | None = None,
) -> BuildResult | None:
    """Run the pipeline for a validated recipe.

    The build goes to ``run_dir`` (default ``out/<name>``). The teacher, baseline and teacher
    outputs stages live in ``shared_dir`` (default ``run_dir``): ``edgekd sweep`` points every
    grid point at the main run's, so they are trained once for all points.

    Under ``torchrun`` every rank trains (DistributedDataParallel, see
    :mod:`edgekd.train.distributed`); rank 0 alone writes stages, exports, evaluates and
    writes the bundle, and the other ranks return ``None`` once it has.
    """
    return _run(recipe, out=out, log=log, on_epoch_end=on_epoch_end, run_dir=run_dir, shared_dir=shared_dir)


def _start(recipe: Recipe, log: Callable[[str], None]) -> ThreadChoice:
    """The build's first lines: its threads (:func:`edgekd.threads.resolve_threads`), then torch
    loading (seconds on a busy machine: said, not silent). Under torchrun rank 0 alone says them."""
    threads = resolve_threads(recipe.threads)
    first = log if os.environ.get("RANK", "0") == "0" else _quiet  # before torchrun's group forms
    first(threads.line())
    if "timm" not in sys.modules:
        with step(first, "loading torch and timm"):
            import timm  # noqa: F401  (imports torch)
    return threads


def _run(
    recipe: Recipe,
    *,
    out,
    log,
    on_epoch_end,
    run_dir=None,
    shared_dir=None,
    threads: ThreadChoice | None = None,
) -> BuildResult | None:
    """:func:`build_recipe`, whose first lines :func:`build` may have said already (``threads``)."""
    threads = threads or _start(recipe, log)
    import torch

    from edgekd.train.distributed import init_distributed

    torch.set_num_threads(threads.count)
    dist = init_distributed()
    if not dist.is_main:
        log = _quiet
    try:
        with run_locks(
            run_dir if run_dir is not None else Path(out) / recipe.name, shared_dir, enabled=dist.is_main
        ):  # rank 0 writes for the job
            result = _build(
                recipe,
                out=out,
                run_dir=run_dir,
                shared_dir=shared_dir,
                ctx=BuildContext(log=log, dist=dist, on_epoch_end=on_epoch_end, threads=threads.count),
            )
        dist.barrier()  # the other ranks wait until rank 0 has written the bundle
        return result
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


def _quiet(message: str) -> None:
    """The log of ranks other than 0: rank 0 speaks for the job."""


def _build(recipe: Recipe, *, out, run_dir, shared_dir, ctx: BuildContext) -> BuildResult | None:
    from edgekd.bundle import write_bundle
    from edgekd.card.build import build_card
    from edgekd.card.evaluation import evaluate_trained
    from edgekd.data import load_data
    from edgekd.export.stage import artifacts_stage, onnx_stage, tensorrt_check_stage
    from edgekd.memory import release_free_memory
    from edgekd.train.stage import debias_history, seed_study, train_models

    log = ctx.log
    _fetch_weights(recipe)
    run_dir = Path(run_dir) if run_dir is not None else Path(out) / recipe.name
    shared_dir = Path(shared_dir) if shared_dir is not None else run_dir
    with ctx.step(f"data: loading {recipe.data.source}"):
        data = load_data(recipe.data, seed=recipe.seed)
    log(
        f"data: {data.description['summary']}; train {len(data.train)}, val {len(data.val)}, "
        f"test {len(data.test)}"
    )
    for line in data.description.get("warnings", []):
        log(f"warning: {line}")
    models = train_models(recipe, data, run_dir=run_dir, shared_dir=shared_dir, seed=recipe.seed, ctx=ctx)
    seed_metrics = seed_study(recipe, data, run_dir, models, ctx=ctx)
    if not ctx.is_main:
        return None

    evaluations = {}
    for name, trained in models.items():
        with ctx.step(f"evaluating {name} on {len(data.test)} test images") as progress:
            evaluations[name] = evaluate_trained(name, trained, data, min_support=recipe.card.min_support)
            progress.result = f"top-1 {evaluations[name].metrics['top1']:.4f}"
    student = models["student"]
    status = {name: trained.status for name, trained in models.items()}
    evaluations["onnx"], status["export"] = onnx_stage(run_dir, recipe, student, data, evaluations, ctx)
    release_free_memory()
    artifacts, skipped, artifacts_status = artifacts_stage(run_dir, recipe, student, evaluations, data, ctx)
    evaluations.update(artifacts)
    if artifacts_status is not None:
        status["artifacts"] = artifacts_status
    deployment, status["tensorrt_check"] = tensorrt_check_stage(run_dir, recipe, evaluations, data, ctx)
    resamples = recipe.card.bootstrap_resamples
    with ctx.step(
        f"card: metrics, class tests and {resamples} bootstrap resamples of {len(evaluations)} models"
    ):
        card = build_card(
            recipe,
            data,
            evaluations,
            seed_metrics=seed_metrics,
            seeds=recipe.seeds,
            learned=student.objective,
            skipped_artifacts=skipped,
            deployment=deployment,
            debias_epochs={
                name: debias_history(models[name].history)
                for name in ("baseline", "student")
                if "adversary_top1" in (models[name].history[-1] if models[name].history else {})
            },
        )
    files = {e.file: e.path for e in evaluations.values() if e.path is not None}
    files.update(
        {
            name: e.path.parent / stored
            for e in evaluations.values()
            for name, stored in e.details.get("extra_files", {}).items()
        }
    )
    engines = {e.file: e.details["engine"] for e in evaluations.values() if "engine" in e.details}
    if recipe.bundle.include_eval_set:  # the test split, for edgekd bench --eval on the device
        from edgekd.bundle.eval_set import write_eval_set

        with ctx.step(f"writing eval_set.npz ({len(data.test)} test images, compressed)"):
            files["eval_set.npz"] = write_eval_set(
                run_dir / "stages" / "export" / "eval_set.npz",
                data.test.images,
                data.test.labels,
                data.test.groups,
            )
    from edgekd.bundle.predictions import PREDICTIONS, write_predictions

    # every model's test predictions and the images each artifact changed: the device's
    # compression steps compare with pred_student, users look the changed images up in eval_set.npz
    files[PREDICTIONS] = write_predictions(
        run_dir / "stages" / "export" / PREDICTIONS,
        y_true=data.test.labels,
        groups=data.test.groups,
        predictions={name: e.predictions for name, e in evaluations.items()},
        artifacts=[name for name, e in evaluations.items() if e.vs_student is not None],
    )
    bundle_dir = write_bundle(
        run_dir,
        recipe,
        data,
        card,
        artifacts=files,
        manifest_extra={"engines": engines} if engines else None,
        log=log,
        images=data.test.images,
    )
    return BuildResult(
        run_dir=run_dir, bundle_dir=bundle_dir, stage_status=status, card=card, rows=summary_rows(card)
    )


def _fetch_weights(recipe: Recipe) -> None:
    """Pretrained weights are fetched (or found in the hub's cache) before any data is read, so
    a machine without them stops with one line in seconds."""
    from edgekd.models.weights import fetch_pretrained

    for section in ("teacher", "student"):
        cfg = getattr(recipe, section)
        if cfg.pretrained:
            fetch_pretrained(cfg.arch, key=f"{section}.pretrained")
