"""The export stages of a build: ``model.onnx`` from the torch student, every other format of the
recipe's ``export`` section from it, and the TensorRT checks of the files meant for TensorRT.

Each is hash-keyed like the training stages, and every file is scored on the test split through
the runtime that will run it (:func:`edgekd.bench.evaluate.logits_through`, one path for every
artifact), so the card's numbers are those of the files that ship.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.bench.evaluate import logits_through
from edgekd.card.evaluation import Evaluation, evaluate
from edgekd.context import BuildContext
from edgekd.data import DataSplits
from edgekd.export.files import MODEL_ONNX
from edgekd.export.runtime import batched_logits, cpu_runtime_name
from edgekd.files import read_json, sha256_file, write_json
from edgekd.recipe import Recipe
from edgekd.stages import Stage
from edgekd.train.stage import Trained

__all__ = ["onnx_stage", "artifacts_stage", "tensorrt_check_stage", "evaluate_artifact"]


def evaluate_artifact(
    name: str, pred: np.ndarray, data: DataSplits, ctx: BuildContext, *, file: str, **card
) -> Evaluation:
    """:func:`~edgekd.card.evaluation.evaluate` of an exported file's test predictions, said on
    the build's log (the metrics, their fairlearn cross-check: seconds on a large test split)."""
    with ctx.step(f"evaluating {file} on {len(pred)} test images") as progress:
        evaluation = evaluate(name, pred, data, file=file, **card)
        progress.result = f"top-1 {evaluation.metrics['top1']:.4f}"
        if evaluation.vs_student is not None:
            progress.result += (
                f", agreement with the student {evaluation.vs_student['prediction_agreement']:.4f}"
            )
    return evaluation


def onnx_stage(
    run_dir: Path,
    recipe: Recipe,
    student: Trained,
    data: DataSplits,
    evaluations: dict[str, Evaluation],
    ctx: BuildContext,
) -> tuple[Evaluation, str]:
    """ONNX of the distilled student, checked against torch and evaluated through onnxruntime.

    Its agreement with torch is the card's ``onnx_matches_torch`` gate: below
    ``export.onnx.min_agreement`` the build writes its bundle and exits 1 naming the gate.
    """
    from edgekd.export.onnx import compare_with_torch, export_onnx

    cfg, log, n = recipe.export.onnx, ctx.log, len(data.test)
    stage = Stage(run_dir, "export", {"student": student.stage.key, "onnx": cfg.model_dump(mode="json")})
    path = stage.path(MODEL_ONNX)

    def export(stage: Stage) -> None:
        with ctx.step(f"exporting {MODEL_ONNX} ({cfg.exporter}, opset {cfg.opset})"):
            export_onnx(
                student.model, path, image_size=data.image_size, opset=cfg.opset, exporter=cfg.exporter
            )
        with ctx.step(f"checking {MODEL_ONNX} against torch on {n} test images") as progress:
            check = compare_with_torch(
                student.model, path, data.test.images, data.mean, data.std, threads=ctx.threads
            )
            progress.result = f"agreement {check['argmax_agreement']:.4f}"
        with ctx.step(f"running {MODEL_ONNX} through onnxruntime on {n} test images"):
            logits = logits_through(
                "onnxruntime", path, data.test.images, data.mean, data.std, threads=ctx.threads
            )
        np.savez(stage.path("test_predictions.npz"), logits=logits)
        write_json(stage.path("check.json"), check)

    status = stage.run(export)
    check = read_json(stage.path("check.json"))
    log(
        f"export: {MODEL_ONNX} ({cfg.exporter}, opset {cfg.opset}) "
        f"{'reused' if status == 'reused' else 'exported'}; agreement with torch "
        f"{check['argmax_agreement']:.4f}, max |diff| {check['max_abs_diff']:.2e}"
    )
    pred = np.load(stage.path("test_predictions.npz"))["logits"].argmax(1)
    onnx = evaluate_artifact(
        "onnx",
        pred,
        data,
        ctx,
        kind="onnx",
        file=MODEL_ONNX,
        path=path,
        runtime=cpu_runtime_name(),
        precision="fp32",
        size_bytes=path.stat().st_size,
        details={"export": {"exporter": cfg.exporter, "opset": cfg.opset, **check}},
        reference=evaluations["student"],
        min_support=recipe.card.min_support,
    )
    return onnx, status


def artifacts_stage(
    run_dir: Path,
    recipe: Recipe,
    student: Trained,
    evaluations: dict[str, Evaluation],
    data: DataSplits,
    ctx: BuildContext,
) -> tuple[dict[str, Evaluation], list[dict], str | None]:
    """Every other export format the recipe turns on (:mod:`edgekd.export.formats`), built from
    model.onnx and evaluated through its own runtime; also the artifacts skipped here, and the
    stage's status (``None`` when no format is on)."""
    from edgekd.export.formats import ExportContext, build_artifacts, built_from_onnx

    cfg, log = recipe.export, ctx.log
    formats = [fmt.key for fmt in built_from_onnx()]
    if not any(getattr(cfg, key).enabled for key in formats):
        return {}, [], None
    onnx = evaluations["onnx"]
    inputs = {
        "onnx": sha256_file(onnx.path),
        **{key: getattr(cfg, key).model_dump(mode="json") for key in formats},
    }
    if cfg.tensorrt.enabled:  # an engine depends on the machine: rebuild where TensorRT appears
        from edgekd.export.tensorrt import engine_info, tensorrt_status

        inputs["tensorrt_here"] = tensorrt_status() or engine_info()
    stage = Stage(run_dir, "artifacts", inputs)

    def export(stage: Stage) -> None:
        context = ExportContext(
            onnx_path=onnx.path,
            out_dir=stage.dir,
            student=student.model,
            calibration=data.train_for_epoch(0),
            check=data.val,
            mean=data.mean,
            std=data.std,
            image_size=data.image_size,
            export=cfg,
            threads=ctx.threads,
            log=log,
            train_for_epoch=data.train_for_epoch,
            class_names=tuple(data.class_names),
            group_names=tuple(data.group_names),
        )
        records = []
        for artifact in build_artifacts(context):
            if artifact.skipped is None:
                images = data.test.images
                with ctx.step(
                    f"running {artifact.file} through {artifact.runtime or artifact.backend} "
                    f"on {len(images)} test images"
                ):
                    logits = (
                        batched_logits(artifact.infer, images, data.mean, data.std)
                        if artifact.infer
                        else logits_through(
                            artifact.backend, artifact.path, images, data.mean, data.std, threads=ctx.threads
                        )
                    )
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
        artifacts[record["name"]] = evaluate_artifact(
            record["name"],
            pred,
            data,
            ctx,
            kind=record["kind"],
            file=record["file"],
            path=path,
            runtime=record["runtime"],
            precision=record["precision"],
            size_bytes=path.stat().st_size,
            details=details,
            reference=evaluations["student"],
            min_support=recipe.card.min_support,
        )
        log(
            f"artifact {record['file']}: top-1 {artifacts[record['name']].metrics['top1']:.4f} "
            f"through {record['runtime']} ({'reused' if status == 'reused' else 'exported'})"
        )
    return artifacts, skipped, status


def tensorrt_check_stage(
    run_dir: Path, recipe: Recipe, evaluations: dict[str, Evaluation], data: DataSplits, ctx: BuildContext
) -> tuple[dict, str]:
    """The files meant for TensorRT against the target's rules, and through TensorRT-RTX's parser
    and builder where it is installed (:mod:`edgekd.export.tensorrt_check`)."""
    from edgekd.export.targets import get_target
    from edgekd.export.tensorrt_check import TENSORRT_FILES, check_for_tensorrt, proxy_module

    log = ctx.log
    target = get_target(recipe.export.target)
    files = {e.file: e.path for e in evaluations.values() if e.file in TENSORRT_FILES and e.path}
    proxy = proxy_module()
    stage = Stage(
        run_dir,
        "tensorrt_check",
        {
            "target": target.record(),
            "files": {name: sha256_file(path) for name, path in files.items()},
            "proxy": getattr(proxy, "__version__", None),
            "image_size": data.image_size,
        },
    )

    def check(stage: Stage) -> None:
        how = "rules and TensorRT-RTX's parser" if proxy else "rules"
        with ctx.step(f"tensorrt: checking {', '.join(files) or 'no file'} for {target.name} ({how})"):
            write_json(
                stage.path("deployment.json"),
                check_for_tensorrt(files, target, image_size=data.image_size, proxy=proxy, log=log),
            )

    status = stage.run(check)
    deployment = read_json(stage.path("deployment.json"))
    deployment["onnx"] = {"opset": recipe.export.onnx.opset, "exporter": recipe.export.onnx.exporter}
    if status == "reused":
        log(f"tensorrt: rules of TensorRT {target.rules} and the parser check reused")
    return deployment, status
