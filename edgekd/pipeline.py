"""``edgekd build``: recipe -> data -> teacher -> baseline -> distilled student -> ONNX -> card -> bundle.

Every stage is hash-keyed (:mod:`edgekd.stages`): a stage whose inputs did not change is reused,
an interrupted one resumes from its last finished epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.bundle import write_bundle
from edgekd.card.build import build_card
from edgekd.card.evaluation import Evaluation, evaluate
from edgekd.card.gates import failed_gates
from edgekd.card.table import summary_rows
from edgekd.data import PIXEL_NEUTRAL, DataSplits, load_data
from edgekd.errors import EdgeKDError
from edgekd.fairness.metrics import evaluate_predictions
from edgekd.files import read_json, sha256_file, write_json
from edgekd.lock import run_locks
from edgekd.memory import release_free_memory
from edgekd.recipe import Recipe, load_recipe
from edgekd.stages import Stage

__all__ = ["build", "BuildResult", "train_models", "teacher_outputs_inputs"]


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


@dataclass
class _Trained:
    """A trained teacher, baseline or student: its network, stage, section of the recipe, test
    logits, per-epoch history and what its objective learned."""

    model: object
    stage: Stage
    config: object
    status: str
    test_logits: np.ndarray
    history: list[dict]
    objective: dict = field(default_factory=dict)


def build(recipe: str | Path | Recipe, *, out: str | Path = "runs", overrides: tuple[str, ...] = (),
          log: Callable[[str], None] = print, on_epoch_end=None) -> BuildResult | None:
    """Run the whole pipeline for a recipe (a file, or a :class:`~edgekd.recipe.Recipe`); see the
    module docstring. ``overrides`` are ``--set`` items (``"distill.temperature=8"``) for a file.

    ``on_epoch_end(stage, epoch, record)`` is called after every training epoch (tests use it
    to interrupt a build).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise EdgeKDError("overrides apply to a recipe file; set the fields of a Recipe object directly")
    return build_recipe(recipe, out=out, log=log, on_epoch_end=on_epoch_end)


def build_recipe(recipe: Recipe, *, out: str | Path = "runs", log: Callable[[str], None] = print,
                 on_epoch_end=None, run_dir: Path | None = None,
                 shared_dir: Path | None = None) -> BuildResult | None:
    """Run the pipeline for a validated recipe.

    The build goes to ``run_dir`` (default ``out/<name>``). The teacher, baseline and teacher
    outputs stages live in ``shared_dir`` (default ``run_dir``): ``edgekd sweep`` points every
    grid point at the main run's, so they are trained once for all points.

    Under ``torchrun`` every rank trains (DistributedDataParallel, see
    :mod:`edgekd.train.distributed`); rank 0 alone writes stages, exports, evaluates and
    writes the bundle, and the other ranks return ``None`` once it has.
    """
    import torch

    from edgekd.train.distributed import init_distributed

    dist = init_distributed()
    if not dist.is_main:
        log = _quiet
    try:
        with run_locks(run_dir if run_dir is not None else Path(out) / recipe.name, shared_dir,
                       enabled=dist.is_main):  # rank 0 writes for the job
            result = _build(recipe, out=out, log=log, on_epoch_end=on_epoch_end, run_dir=run_dir,
                            shared_dir=shared_dir, dist=dist)
        dist.barrier()  # the other ranks wait until rank 0 has written the bundle
        return result
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


def _quiet(message: str) -> None:
    """The log of ranks other than 0: rank 0 speaks for the job."""


def _build(recipe: Recipe, *, out, log, on_epoch_end, run_dir, shared_dir, dist) -> BuildResult | None:
    import torch

    torch.set_num_threads(recipe.threads or torch.get_num_threads())
    _fetch_weights(recipe)
    run_dir = Path(run_dir) if run_dir is not None else Path(out) / recipe.name
    shared_dir = Path(shared_dir) if shared_dir is not None else run_dir
    data = load_data(recipe.data, seed=recipe.seed)
    log(f"data: {data.description['summary']}; train {len(data.train)}, val {len(data.val)}, "
        f"test {len(data.test)}")
    for line in data.description.get("warnings", []):
        log(f"warning: {line}")
    models = train_models(recipe, data, run_dir=run_dir, shared_dir=shared_dir, seed=recipe.seed,
                           log=log, on_epoch_end=on_epoch_end, dist=dist)
    seed_metrics = _seed_study(recipe, data, run_dir, models, log=log, on_epoch_end=on_epoch_end,
                               dist=dist)
    if not dist.is_main:
        return None

    evaluations = {name: _evaluate_trained(name, trained, data, min_support=recipe.card.min_support)
                   for name, trained in models.items()}
    student = models["student"]
    status = {name: trained.status for name, trained in models.items()}
    evaluations["onnx"], status["export"] = _export_stage(run_dir, recipe, student, data, evaluations, log)
    release_free_memory()
    artifacts, skipped, artifacts_status = _artifacts_stage(run_dir, recipe, student, evaluations, data, log)
    evaluations.update(artifacts)
    if artifacts_status is not None:
        status["artifacts"] = artifacts_status
    deployment, status["tensorrt_check"] = _tensorrt_check_stage(run_dir, recipe, evaluations, data, log)
    card = build_card(recipe, data, evaluations, seed_metrics=seed_metrics, seeds=recipe.seeds,
                      learned=student.objective, skipped_artifacts=skipped, deployment=deployment,
                      debias_epochs={name: _debias_history(models[name].history)
                                     for name in ("baseline", "student")
                                     if "adversary_top1" in (models[name].history[-1]
                                                             if models[name].history else {})})
    files = {e.file: e.path for e in evaluations.values() if e.path is not None}
    files.update({name: e.path.parent / stored for e in evaluations.values()
                  for name, stored in e.details.get("extra_files", {}).items()})
    engines = {e.file: e.details["engine"] for e in evaluations.values() if "engine" in e.details}
    if recipe.bundle.include_eval_set:  # the test split, for edgekd bench --eval on the device
        from edgekd.bundle.eval_set import write_eval_set

        files["eval_set.npz"] = write_eval_set(run_dir / "stages" / "export" / "eval_set.npz",
                                               data.test.images, data.test.labels, data.test.groups)
    bundle_dir = write_bundle(run_dir, recipe, data, card, artifacts=files,
                              manifest_extra={"engines": engines} if engines else None)
    return BuildResult(run_dir=run_dir, bundle_dir=bundle_dir, stage_status=status, card=card,
                       rows=summary_rows(card))


def _tensorrt_check_stage(run_dir: Path, recipe: Recipe, evaluations: dict[str, Evaluation],
                          data: DataSplits, log) -> tuple[dict, str]:
    """The files meant for TensorRT against the target's rules, and through TensorRT-RTX's parser
    and builder where it is installed (:mod:`edgekd.export.tensorrt_check`)."""
    from edgekd.export.targets import get_target
    from edgekd.export.tensorrt_check import TENSORRT_FILES, check_for_tensorrt, proxy_module

    target = get_target(recipe.export.target)
    files = {e.file: e.path for e in evaluations.values() if e.file in TENSORRT_FILES and e.path}
    proxy = proxy_module()
    stage = Stage(run_dir, "tensorrt_check", {
        "target": target.record(), "files": {name: sha256_file(path) for name, path in files.items()},
        "proxy": getattr(proxy, "__version__", None), "image_size": data.image_size})

    def check(stage: Stage) -> None:
        write_json(stage.path("deployment.json"), check_for_tensorrt(
            files, target, image_size=data.image_size, proxy=proxy, log=log))

    status = stage.run(check)
    deployment = read_json(stage.path("deployment.json"))
    deployment["onnx"] = {"opset": recipe.export.onnx.opset, "exporter": recipe.export.onnx.exporter}
    if status == "reused":
        log(f"tensorrt: rules of TensorRT {target.rules} and the parser check reused")
    return deployment, status


def _fetch_weights(recipe: Recipe) -> None:
    """Pretrained weights are fetched (or found in the hub's cache) before any data is read, so
    a machine without them stops with one line in seconds."""
    from edgekd.models.weights import fetch_pretrained

    for section in ("teacher", "student"):
        cfg = getattr(recipe, section)
        if cfg.pretrained:
            fetch_pretrained(cfg.arch, key=f"{section}.pretrained")


def train_models(recipe: Recipe, data: DataSplits, *, run_dir: Path, shared_dir: Path, seed: int,
                  log, on_epoch_end, dist) -> dict[str, _Trained]:
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

    def train(name: str, cfg, objective, *, extra: dict, teacher_outputs=None,
              cache_teacher: bool = True) -> _Trained:
        inputs = {**data_key, "model": _model_key(cfg), **extra}
        where = run_dir if name == "student" else shared_dir
        return _train_stage(Stage(where, name, inputs), cfg, objective, data, seed=seed,
                            teacher_outputs=teacher_outputs, cache_teacher=cache_teacher, log=log,
                            on_epoch_end=on_epoch_end, dist=dist)

    def debiased(objective, stage: str) -> tuple[object, dict]:
        if not recipe.debias.active or stage not in recipe.debias.apply_to:
            return objective, {}
        settings = recipe.debias.model_dump(mode="json", by_alias=True, exclude={"apply_to"})
        return with_debiasing(objective, recipe.debias), {"debias": settings}

    # label_smoothing is each network's: the baseline's cross-entropy and the label term of the
    # student's distillation loss take the student's, so the two are compared on the same targets.
    teacher = train("teacher", recipe.teacher,
                    CrossEntropy(label_smoothing=recipe.teacher.label_smoothing), extra={})
    baseline_objective, baseline_extra = debiased(
        CrossEntropy(label_smoothing=recipe.student.label_smoothing), "baseline")
    baseline = train("baseline", recipe.student, baseline_objective, extra=baseline_extra)
    outputs_stage = Stage(shared_dir, "teacher_outputs",
                          teacher_outputs_inputs(data_key, teacher.stage.key, recipe.student))
    if dist.is_main:
        outputs_stage.start()  # keeps the files of the same teacher and data, clears stale ones
    teacher_outputs = TeacherOutputs(teacher.model, data, cache_dir=outputs_stage.dir, dist=dist)
    student_objective, student_extra = debiased(
        build_objective(recipe.distill, label_smoothing=recipe.student.label_smoothing), "student")
    student = train("student", recipe.student, student_objective,
                    extra={"distill": recipe.distill.model_dump(mode="json"),
                           "teacher": teacher.stage.key, **student_extra},
                    teacher_outputs=teacher_outputs, cache_teacher=recipe.distill.cache_teacher)
    return {"teacher": teacher, "baseline": baseline, "student": student}


def teacher_outputs_inputs(data_key: dict, teacher_key: str, student_cfg) -> dict:
    """What the teacher-outputs stage depends on: the data and training seed (``data_key``), the
    teacher, and the student's augmentation when it is on (the cached outputs are the teacher's
    on the student's augmented images, so other settings must never read them)."""
    inputs = {**data_key, "teacher": teacher_key}
    if student_cfg.augment.enabled:
        inputs["augment"] = student_cfg.augment.effective()
    return inputs


def _seed_study(recipe: Recipe, data: DataSplits, run_dir: Path, main_models: dict[str, _Trained], *,
                log, on_epoch_end, dist) -> dict[str, list[dict]] | None:
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
            log(f"seed study: seed {seed} ({recipe.seeds.index(seed) + 1} of {len(recipe.seeds)})")
            where = run_dir / "seeds" / str(seed)
            models = train_models(recipe, data, run_dir=where, shared_dir=where, seed=seed, log=log,
                                   on_epoch_end=on_epoch_end, dist=dist)
        if dist.is_main:  # the other ranks hold no test predictions
            for name, trained in models.items():
                per_seed[name].append(evaluate_predictions(
                    data.test.labels, trained.test_logits.argmax(1), data.test.groups,
                    class_names=data.class_names, group_names=data.group_names,
                    min_support=recipe.card.min_support))
    return per_seed


def _debias_history(history: list[dict]) -> list[dict]:
    keys = ("epoch", "adversary_top1", "adversary_reference", "debias_lambda", "val_mean_abs_disparity")
    return [{k: r.get(k) for k in keys} for r in history]


def _model_key(cfg) -> dict:
    key = cfg.model_dump(mode="json", exclude={"augment"})
    if cfg.augment.enabled:  # only what acts; when off, the key is as before augmentation existed
        key["augment"] = cfg.augment.effective()
    if cfg.checkpoint is not None:
        key["checkpoint"] = sha256_file(cfg.checkpoint)  # the weights, not where they live
    return key


def _train_stage(stage: Stage, cfg, objective, data: DataSplits, *, seed: int, teacher_outputs,
                 cache_teacher: bool, log, on_epoch_end, dist) -> _Trained:
    import torch

    from edgekd.models import create_model
    from edgekd.models.tensors import predict_logits
    from edgekd.train import fit

    section = "teacher" if stage.name == "teacher" else "student"
    if cfg.sync_batchnorm and dist.enabled and dist.device.type != "cuda":
        raise EdgeKDError(f"{section}.sync_batchnorm: SyncBatchNorm needs CUDA GPUs; this torchrun "
                          "job runs on CPU (gloo), so set it to false")
    torch.manual_seed(seed)
    done = dist.broadcast(stage.done if dist.is_main else None)
    # a reused stage's best.pt replaces the first weights: they are not fetched or read
    model = create_model(cfg, data.num_classes, key=section, load=not done, log=log)
    if done:
        reused = None
        if dist.is_main:
            reused = (torch.load(stage.path("best.pt"), map_location="cpu", weights_only=True)["model"],
                      np.load(stage.path("test_predictions.npz"))["logits"],
                      read_json(stage.path("history.json")), read_json(stage.path("objective.json")))
        weights, logits, history, summary = dist.broadcast(reused)
        model.load_state_dict(weights)
        model.eval()
        log(f"{stage.name}: reused (inputs unchanged, key {stage.key[:12]})")
        return _Trained(model, stage, cfg, "reused", logits, history, summary)
    resumed = dist.broadcast(stage.start() and stage.path("last.pt").exists() if dist.is_main else None)
    log(f"{stage.name}: training {cfg.arch} for {cfg.epochs} epochs"
        + (" (resuming)" if resumed else "")
        + (f" on {dist.world_size} processes" if dist.enabled else ""))
    history = fit(model, objective, data, cfg, stage, seed=seed, teacher_outputs=teacher_outputs,
                  cache_teacher=cache_teacher, on_epoch_end=on_epoch_end, log=log, dist=dist)
    logits = np.zeros((0, data.num_classes), dtype=np.float32)
    if dist.is_main:
        if cfg.epochs == 0:
            torch.save({"model": model.state_dict(), "epoch": 0}, stage.path("best.pt"))
        logits = predict_logits(model, data.test.images, data.mean, data.std)
        np.savez(stage.path("test_predictions.npz"), logits=logits, labels=data.test.labels,
                 groups=data.test.groups)
        write_json(stage.path("objective.json"), objective.summary())
        stage.finish({"epochs": cfg.epochs, "world_size": dist.world_size})
    release_free_memory()  # what training freed goes back, not into the next stage's peak
    return _Trained(model, stage, cfg, "resumed" if resumed else "trained", logits, history,
                    objective.summary())


# What the card keeps of every training epoch (its training-curves plot draws them).
CURVE_KEYS = ("epoch", "train_loss", "train_top1", "val_top1", "val_mean_abs_disparity",
              "val_cell_balanced_accuracy", "val_worst_cell_recall", "adversary_top1",
              "adversary_reference")


def _evaluate_trained(name: str, trained: _Trained, data: DataSplits, *,
                      min_support: int) -> Evaluation:
    """A trained torch model's evaluation, with where it came from."""
    from edgekd.models import count_parameters, state_dict_bytes, weights_record
    from edgekd.train.selection import best_epoch, resolve_select_by

    cfg = trained.config
    select_by = resolve_select_by(cfg.select_by, len(data.group_names))
    best = best_epoch(trained.history, select_by)
    training = {"epochs": cfg.epochs, "selected_by": select_by,
                "best_epoch": best["epoch"] if best else 0,
                "best_val_top1": best["val_top1"] if best else None,
                "label_smoothing": cfg.label_smoothing}
    if trained.history and trained.history[-1].get("precision"):
        training["precision"] = trained.history[-1]["precision"]
    if best and select_by != "top1":
        training[f"best_val_{select_by}"] = best.get(f"val_{select_by}")
    training["augment"] = cfg.augment.effective()
    training["history"] = [{key: record[key] for key in CURVE_KEYS if record.get(key) is not None}
                           for record in trained.history]
    return evaluate(name, trained.test_logits.argmax(1), data, kind="torch",
                    size_bytes=state_dict_bytes(trained.model),
                    details={"arch": cfg.arch, "parameters": count_parameters(trained.model),
                             "weights": weights_record(cfg), "stage_key": trained.stage.key,
                             "training": training},
                    min_support=min_support)


def _export_stage(run_dir: Path, recipe: Recipe, student: _Trained, data: DataSplits,
                  evaluations: dict[str, Evaluation], log) -> tuple[Evaluation, str]:
    """ONNX of the distilled student, checked against torch and evaluated through onnxruntime.

    Its agreement with torch is the card's ``onnx_matches_torch`` gate: below
    ``export.onnx.min_agreement`` the build writes its bundle and exits 1 naming the gate.
    """
    from edgekd.export.onnx import compare_with_torch, export_onnx
    from edgekd.export.runtime import OnnxClassifier, cpu_runtime_name

    cfg = recipe.export.onnx
    stage = Stage(run_dir, "export", {"student": student.stage.key,
                                      "onnx": cfg.model_dump(mode="json")})
    path = stage.path("model.onnx")

    def export(stage: Stage) -> None:
        export_onnx(student.model, path, image_size=data.image_size, opset=cfg.opset,
                    exporter=cfg.exporter)
        check = compare_with_torch(student.model, path, data.test.images, data.mean, data.std,
                                   threads=recipe.threads)
        logits = OnnxClassifier(path, threads=recipe.threads).predict_images(
            data.test.images, data.mean, data.std)
        np.savez(stage.path("test_predictions.npz"), logits=logits)
        write_json(stage.path("check.json"), check)

    status = stage.run(export)
    check = read_json(stage.path("check.json"))
    log(f"export: model.onnx ({cfg.exporter}, opset {cfg.opset}) "
        f"{'reused' if status == 'reused' else 'exported'}; agreement with torch "
        f"{check['argmax_agreement']:.4f}, max |diff| {check['max_abs_diff']:.2e}")
    pred = np.load(stage.path("test_predictions.npz"))["logits"].argmax(1)
    onnx = evaluate("onnx", pred, data, kind="onnx", file="model.onnx", path=path,
                    runtime=cpu_runtime_name(),
                    precision="fp32", size_bytes=path.stat().st_size,
                    details={"export": {"exporter": cfg.exporter, "opset": cfg.opset, **check}},
                    reference=evaluations["student"], min_support=recipe.card.min_support)
    return onnx, status


def _artifacts_stage(run_dir: Path, recipe: Recipe, student: _Trained, evaluations: dict[str, Evaluation],
                     data: DataSplits, log) -> tuple[dict[str, Evaluation], list[dict], str | None]:
    """Every other export format the recipe turns on (:mod:`edgekd.export.formats`), built from
    model.onnx and evaluated through its own runtime; also the artifacts skipped here, and the
    stage's status (``None`` when no format is on)."""
    from edgekd.bench.evaluate import logits_through
    from edgekd.export.formats import EXPORT_FORMATS, ExportContext, build_artifacts
    from edgekd.export.runtime import batched_logits

    cfg = recipe.export
    if not any(getattr(cfg, key).enabled for key in EXPORT_FORMATS):
        return {}, [], None
    onnx = evaluations["onnx"]
    inputs = {"onnx": sha256_file(onnx.path),
              **{key: getattr(cfg, key).model_dump(mode="json") for key in EXPORT_FORMATS}}
    if cfg.tensorrt.enabled:  # an engine depends on the machine: rebuild where TensorRT appears
        from edgekd.export.tensorrt import engine_info, tensorrt_status

        inputs["tensorrt_here"] = tensorrt_status() or engine_info()
    stage = Stage(run_dir, "artifacts", inputs)

    def export(stage: Stage) -> None:
        context = ExportContext(onnx_path=onnx.path, out_dir=stage.dir, student=student.model,
                                calibration=data.train_for_epoch(0), check=data.val, mean=data.mean,
                                std=data.std, image_size=data.image_size, export=cfg,
                                threads=recipe.threads, log=log, train_for_epoch=data.train_for_epoch)
        records = []
        for artifact in build_artifacts(context):
            if artifact.skipped is None:
                images = data.test.images
                logits = (batched_logits(artifact.infer, images, data.mean, data.std) if artifact.infer
                          else logits_through(artifact.backend, artifact.path, images, data.mean,
                                              data.std, threads=recipe.threads))
                np.savez(stage.path(f"{artifact.name}.npz"), logits=logits)
            records.append(artifact.record())
        write_json(stage.path("artifacts.json"), records)

    status = stage.run(export)
    artifacts, skipped = {}, []
    for record in read_json(stage.path("artifacts.json")):
        if "skipped" in record:
            skipped.append({"name": record["name"], "skipped": record["skipped"]})
            continue
        path = stage.path(record["path"])
        pred = np.load(stage.path(f"{record['name']}.npz"))["logits"].argmax(1)
        details = {"export": record.get("export", {})}
        for key in ("extra_files", "engine"):  # files shipped beside it; an engine's machine
            if record.get(key):
                details[key] = record[key]
        artifacts[record["name"]] = evaluate(
            record["name"], pred, data, kind=record["kind"], file=record["file"], path=path,
            runtime=record["runtime"], precision=record["precision"], size_bytes=path.stat().st_size,
            details=details, reference=evaluations["student"], min_support=recipe.card.min_support)
        log(f"artifact {record['file']}: top-1 {artifacts[record['name']].metrics['top1']:.4f} "
            f"through {record['runtime']} ({'reused' if status == 'reused' else 'exported'})")
    return artifacts, skipped, status
