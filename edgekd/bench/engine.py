"""``edgekd engine BUNDLE``: build a TensorRT engine on the device, evaluate it, add it to the bundle.

TensorRT engines run only on the GPU model and TensorRT version that built them, so a bundle
ships ONNX files and the device builds its own engine (:func:`build_bundle_engine`):

1. :func:`plan_engine` (pure, no TensorRT) chooses everything from the bundle and the options:

   =========  ==============================================  ==========================================
   precision  ONNX it reads                                   where the INT8 scales come from
   =========  ==============================================  ==========================================
   fp16       ``model.onnx``                                  -
   fp32       ``model.onnx``                                  -
   int8       ``model.int8.trt.onnx`` when the bundle has it  its Q/DQ nodes (explicit quantization)
   int8       else ``model.onnx`` with ``calibration.cache``  the cache, through a calibrator that
                                                              only reads it
   =========  ==============================================  ==========================================

   the builder flags (:func:`edgekd.export.tensorrt.precision_flags`), the device (GPU, or a DLA
   core with GPU fallback: :func:`edgekd.export.tensorrt.device_settings`), the optimisation
   profile (on DLA one static batch, ``opt_batch``: DLA does not run dynamic shapes) and the
   file, ``model.<precision>[.dla<N>].engine`` (:func:`engine_file_name`);
2. the engine is built into a temporary folder (:func:`edgekd.export.tensorrt.build_engine`);
3. it is run on the bundle's ``eval_set.npz`` through the bench backend that runs engines, scored
   with the card's metrics, and compared with ``model.onnx`` through onnxruntime on the same
   images (the student's own predictions are not in a bundle; :func:`engine_entry` records the
   bounds this puts on the agreement with the student);
4. with ``update_card`` the engine file, its manifest entry (``engines``: TensorRT, CUDA, GPU)
   and its card entry go into the bundle (:func:`edgekd.bench.card_update.add_engine`); without
   it the engine is written to ``out`` and the bundle is left alone.

    result = build_bundle_engine("quickstart-0.1.0", precision="int8", dla_core=0)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekd.bundle.eval_set import EVAL_SET, read_eval_set
from edgekd.errors import EdgeKDError
from edgekd.export.files import CALIBRATION_CACHE, INT8_TRT_ONNX, engine_file_name, engine_model_name
from edgekd.export.tensorrt import (
    PRECISIONS,
    device_settings,
    engine_source,
    precision_flags,
    profile_shapes,
)
from edgekd.fairness.metric_table import METRICS, difference
from edgekd.files import atomic_output

__all__ = [
    "PRECISIONS",
    "INT8_TRT_ONNX",
    "CALIBRATION_CACHE",
    "EnginePlan",
    "engine_file_name",
    "target_mismatch",
    "check_bundle_for_tensorrt",
    "engine_model_name",
    "choose_source",
    "plan_engine",
    "built_on",
    "engine_entry",
    "build_bundle_engine",
]


@dataclass(frozen=True)
class EnginePlan:
    """What :func:`build_bundle_engine` will build: every choice, made before TensorRT is touched."""

    precision: str
    onnx: str
    int8_scales: str | None  # "Q/DQ nodes of <file>" | "calibration cache <file>" | None
    calibration_cache: str | None
    flags: tuple[str, ...]
    device: str  # GPU or DLA
    dla_core: int | None
    gpu_fallback: bool
    batches: tuple[int, int, int]  # min, opt, max
    input_shapes: tuple[tuple[int, ...], ...]  # the profile's min, opt, max NCHW shapes
    workspace_mb: int
    file: str
    name: str

    def record(self) -> dict:
        """Plain data for the card entry's ``build`` block."""
        out = asdict(self)
        out["flags"], out["batches"] = list(self.flags), list(self.batches)
        out["input_shapes"] = [list(s) for s in self.input_shapes]
        return out


def choose_source(
    bundle: Path, precision: str, *, strongly_typed: bool = False, calibrator: bool = True
) -> tuple[str, str | None, str | None]:
    """The ONNX file an engine of ``precision`` is built from, where its INT8 scales come from,
    and the calibration cache it reads (file names in ``bundle``), for a TensorRT that builds
    ``strongly_typed`` networks (11.x) or not: :func:`edgekd.export.tensorrt.engine_source`."""
    bundle = Path(bundle)
    files = {p.name: p for p in bundle.iterdir() if p.is_file()} if bundle.is_dir() else {}
    try:
        return engine_source(precision, files, strongly_typed=strongly_typed, calibrator=calibrator)
    except EdgeKDError as error:
        message = str(error)
        raise EdgeKDError(
            message if message.startswith("--precision: ") else f"{bundle}: {message}"
        ) from None


def plan_engine(
    bundle: Path,
    *,
    precision: str = "fp16",
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    image_size: int | None = None,
    strongly_typed: bool = False,
    calibrator: bool = True,
) -> EnginePlan:
    """Every choice of an engine build for ``bundle``, checked (one-line errors), without TensorRT.

    ``image_size`` defaults to the bundle's preprocess.json ``input_size``; ``strongly_typed``
    and ``calibrator`` describe the TensorRT that will build (11.x: strongly typed, no calibrator).
    """
    bundle = Path(bundle)
    onnx, scales, cache = choose_source(
        bundle, precision, strongly_typed=strongly_typed, calibrator=calibrator
    )
    device = device_settings(precision, dla_core)
    if workspace_mb < 16:
        raise EdgeKDError(f"--workspace-mb: {workspace_mb}; must be at least 16")
    if image_size is None:
        from edgekd.bench.target import read_preprocess

        preprocess = read_preprocess(bundle / "preprocess.json")
        if preprocess is None:
            raise EdgeKDError(f"{bundle}: has no preprocess.json (its input size)")
        _, h, w = preprocess["input_size"]
        if h != w:
            raise EdgeKDError(
                f"{bundle}/preprocess.json: input_size {h}x{w}; engines are built for square inputs"
            )
        image_size = h
    profile_shapes(image_size, min_batch, opt_batch, max_batch)  # checks the order
    if device["device"] == "DLA":  # DLA runs static shapes only: one batch, opt_batch
        min_batch = max_batch = opt_batch
    shapes = profile_shapes(image_size, min_batch, opt_batch, max_batch)
    flags = [] if strongly_typed else precision_flags(precision)
    return EnginePlan(
        precision=precision,
        onnx=onnx,
        int8_scales=scales,
        calibration_cache=cache,
        flags=tuple(flags + device["flags"]),
        device=device["device"],
        dla_core=device["dla_core"],
        gpu_fallback="GPU_FALLBACK" in device["flags"],
        batches=(min_batch, opt_batch, max_batch),
        input_shapes=shapes,
        workspace_mb=workspace_mb,
        file=engine_file_name(precision, dla_core),
        name=engine_model_name(precision, dla_core),
    )


def built_on(device: dict, info: dict) -> dict:
    """Where an engine was built (and so where it can run): the bench device block
    (:func:`edgekd.bench.device.describe_device`) and :func:`edgekd.export.tensorrt.engine_info`."""
    jetson = device.get("jetson") or {}
    return {
        "device": device.get("id"),
        "gpu": info.get("gpu"),
        "tensorrt": info.get("tensorrt"),
        "cuda": info.get("cuda"),
        "board": jetson.get("model"),
        "jetpack": jetson.get("jetpack"),
        "l4t": jetson.get("l4t"),
        "power_mode": jetson.get("power_mode"),
    }


def engine_entry(
    plan: EnginePlan,
    *,
    metrics: dict,
    predictions: np.ndarray,
    eval_set,
    card: dict,
    reference: np.ndarray,
    size_bytes: int,
    info: dict,
    device: dict,
    batch: int,
) -> tuple[str, dict]:
    """The card's model entry of an engine evaluated on the device: ``(name, entry)``.

    ``metrics`` are the engine's (:func:`edgekd.fairness.metrics.evaluate_predictions` on
    ``eval_set``); ``reference`` the predictions of ``model.onnx`` through onnxruntime on the same
    images. ``vs_student``: the change of every metric of the table against the student's
    metrics on the card (the eval set is the build's test split), and the prediction agreement
    with ``model.onnx`` (``agreement_with``), with the bounds that puts on the agreement with the
    student given model.onnx's own agreement with it at build time. Bootstrap intervals use the
    card's settings.
    """
    from edgekd.bench.evaluate import REFERENCE_FILE, agreement, card_min_support, student_agreement_bounds
    from edgekd.card.evaluation import Evaluation, worst_agreement

    models = card.get("models") or {}
    student = models.get("student") or {}
    onnx = next((e for e in models.values() if e.get("file") == REFERENCE_FILE), {})
    agree = agreement(predictions, reference)
    vs_student = {
        "prediction_agreement": agree,
        "agreement_with": f"{REFERENCE_FILE} through onnxruntime (CPU) on {EVAL_SET}; the student's "
        f"predictions are not in the bundle",
        "student_agreement_bounds": student_agreement_bounds(
            agree, (onnx.get("vs_student") or {}).get("prediction_agreement")
        ),
        **{
            f"{m.key}_change": difference(m.read(metrics), m.read(student.get("metrics") or {}))
            for m in METRICS.values()
        },
        # where it departs most from model.onnx: what the worst-place gates read
        **worst_agreement(
            eval_set.labels,
            reference,
            predictions,
            eval_set.groups,
            class_names=card["task"]["classes"],
            group_names=card["data"]["groups"],
            min_support=card_min_support(card),
        ),
    }
    evaluation = Evaluation(
        name=plan.name,
        kind="tensorrt",
        predictions=np.asarray(predictions),
        metrics=metrics,
        size_bytes=int(size_bytes),
        precision=plan.precision,
        runtime=f"TensorRT {info.get('tensorrt')} on {info.get('gpu')}"
        + (f" (DLA core {plan.dla_core}, GPU fallback)" if plan.dla_core is not None else ""),
        file=plan.file,
        details={
            "built_on_device": True,
            "built_on": built_on(device, info),
            "engine": info,
            "build": plan.record(),
            "evaluated_on": {"file": EVAL_SET, "images": int(len(predictions)), "batch": batch},
        },
        vs_student=vs_student,
    )
    entry = evaluation.card_entry()
    ci = student.get("ci")
    if ci and ci.get("resamples"):
        from edgekd.fairness.bootstrap import bootstrap_intervals

        entry["ci"] = bootstrap_intervals(
            eval_set.labels,
            predictions,
            eval_set.groups,
            num_classes=len(card["task"]["classes"]),
            num_groups=len(card["data"]["groups"]),
            resamples=ci["resamples"],
            level=ci["level"],
            seed=ci.get("seed") or 0,
            min_support=card_min_support(card),
        )
    return plan.name, entry


def _local_api():
    """This machine's TensorRT (:class:`~edgekd.export.tensorrt.TensorRTApi`), or None."""
    from edgekd.export.tensorrt import tensorrt_api

    try:
        return tensorrt_api()
    except ImportError:
        return None


def target_mismatch(target: dict | None, version: str) -> str | None:
    """One line when this device's TensorRT ``version`` is not the line of the bundle's
    deployment ``target`` (the card's ``deployment.target``), saying what to do; else None."""
    from edgekd.export.targets import TARGETS, tensorrt_line

    if not target or not target.get("rules"):
        return None
    local = tensorrt_line(version)
    if local == target["rules"]:
        return None
    fits = [t.name for t in TARGETS.values() if t.rules == local]
    return (
        f"engine: this device has TensorRT {version}, the bundle was made for {target.get('name')} "
        f"(TensorRT {target.get('tensorrt')}, ONNX opset <= {target.get('max_opset')}); its files "
        f"may not parse or may compute differently here: rebuild with --set export.target="
        f"{fits[0] if fits else '<target>'} for this TensorRT"
        + (f" (targets of this line: {', '.join(fits)})" if len(fits) > 1 else "")
        + ", or install the TensorRT of the target"
    )


def check_bundle_for_tensorrt(
    bundle: str | Path, *, target: str | None = None, log: Callable[[str], None] | None = None
) -> dict:
    """Without building an engine: the bundle's files meant for TensorRT against the rules of
    ``target`` (default: the one its card names) and, where TensorRT-RTX is installed, through
    its parser and builder (:func:`edgekd.export.tensorrt_check.check_for_tensorrt`).

    Returns ``{"deployment": ..., "gates": [...]}``; a gate that fails means a file the target's
    TensorRT would not parse.
    """
    from edgekd.bench.target import is_bundle, read_preprocess
    from edgekd.card.io import load_card
    from edgekd.export.targets import get_target
    from edgekd.export.tensorrt_check import (
        TENSORRT_FILES,
        check_for_tensorrt,
        proxy_module,
        tensorrt_gates,
    )

    bundle = Path(bundle)
    if not is_bundle(bundle):
        raise EdgeKDError(
            f"{bundle}: not a bundle directory (with manifest.json and card.json); "
            f"unpack the release tarball and give its directory"
        )
    card = load_card(bundle)
    name = target or ((card.get("deployment") or {}).get("target") or {}).get("name")
    if name is None:
        raise EdgeKDError(
            f"{bundle}: its card names no deployment target (built before targets "
            f"existed); give one with --target"
        )
    preprocess = read_preprocess(bundle / "preprocess.json") or {}
    size = (preprocess.get("input_size") or [3, 224, 224])[1]
    files = {f: bundle / f for f in TENSORRT_FILES if (bundle / f).is_file()}
    deployment = check_for_tensorrt(
        files, get_target(name), image_size=size, proxy=proxy_module(), log=log or (lambda message: None)
    )
    names = {e["file"]: n for n, e in (card.get("models") or {}).items() if e.get("file")}
    return {"deployment": deployment, "gates": tensorrt_gates(deployment, names)}


def build_bundle_engine(
    bundle: str | Path,
    *,
    precision: str = "fp16",
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    update_card: bool = True,
    out: str | Path | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Build, evaluate and (with ``update_card``) add a TensorRT engine to ``bundle``.

    Parameters
    ----------
    bundle : path
        A bundle directory (unpacked release).
    precision : {"fp16", "int8", "fp32"}
        Engine precision; int8 reads the bundle's INT8 source (module table).
    dla_core : int, optional
        Run on this DLA core with GPU fallback (fp16 or int8).
    workspace_mb, min_batch, opt_batch, max_batch : int
        Builder workspace and the optimisation profile's batch range.
    update_card : bool
        Add the engine, its manifest entry and card entry to the bundle (the bundle must verify
        and hold ``eval_set.npz``); else write the engine to ``out`` (default: the current
        directory) and leave the bundle untouched.
    threads : int, optional
        onnxruntime threads for the ``model.onnx`` reference.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    dict
        ``engine`` (path written), ``name``, ``plan``, ``entry`` (the card entry, or None without
        an eval set), ``compression_step`` (student -> engine on this device, from the bundle's
        predictions.npz; None without it or an eval set), ``card_updated``.
    """
    from edgekd.bench.backends import BACKENDS
    from edgekd.bench.card_update import add_engine
    from edgekd.bench.device import describe_device
    from edgekd.bench.evaluate import (
        card_min_support,
        eval_predictions,
        evaluate_artifact,
        reference_predictions,
        student_step,
    )
    from edgekd.bench.target import is_bundle, resolve_target
    from edgekd.bundle.manifest import manifest_problems
    from edgekd.card.io import load_card
    from edgekd.export.tensorrt import build_engine, engine_info, tensorrt_status

    log = log or (lambda message: None)
    bundle = Path(bundle)
    if not is_bundle(bundle):
        raise EdgeKDError(
            f"{bundle}: not a bundle directory (with manifest.json and card.json); "
            f"unpack the release tarball and give its directory"
        )
    target = resolve_target(bundle)
    api = _local_api()
    plan = plan_engine(
        bundle,
        precision=precision,
        dla_core=dla_core,
        workspace_mb=workspace_mb,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        strongly_typed=api is not None and api.strongly_typed,
        calibrator=api is None or api.has_calibrator,
    )
    has_eval = (bundle / EVAL_SET).is_file()
    if update_card:
        if not has_eval:
            raise EdgeKDError(
                f"{bundle}: has no {EVAL_SET} to evaluate the engine on; build with "
                f"bundle.include_eval_set: true, or use --no-update-card"
            )
        problems = manifest_problems(bundle)
        if problems:
            raise EdgeKDError(
                f"{bundle}: does not match its manifest ({problems[0]}); run `edgekd "
                f"verify` and restore the bundle first"
            )
    destination = None if update_card else Path(out or Path.cwd())
    if destination is not None and destination.is_dir():
        destination = destination / plan.file
    if destination is not None and destination.resolve().is_relative_to(bundle.resolve()):
        raise EdgeKDError(
            f"--out: {destination} is inside the bundle and would break its manifest; "
            f"use --update-card to add the engine to the bundle"
        )
    status = tensorrt_status()
    if status is not None:
        raise EdgeKDError(f"edgekd engine: {status}")
    card = load_card(bundle)
    note = api and target_mismatch((card.get("deployment") or {}).get("target"), api.version)
    if note:
        log(note)
    with tempfile.TemporaryDirectory(prefix="edgekd-engine-") as tmp:
        path = Path(tmp) / plan.file
        log(
            f"engine: building {plan.file} from {plan.onnx} ({plan.precision}"
            + (f", INT8 scales from the {plan.int8_scales}" if plan.int8_scales else "")
            + (f", DLA core {plan.dla_core} with GPU fallback" if plan.dla_core is not None else "")
            + ")"
        )
        build_engine(
            bundle / plan.onnx,
            path,
            precision=plan.precision,
            image_size=plan.input_shapes[0][2],
            min_batch=plan.batches[0],
            opt_batch=plan.batches[1],
            max_batch=plan.batches[2],
            workspace_mb=workspace_mb,
            explicit_int8=plan.onnx == INT8_TRT_ONNX,
            calibration_cache=bundle / plan.calibration_cache if plan.calibration_cache else None,
            dla_core=plan.dla_core,
        )
        info = engine_info()
        entry = step = None
        if has_eval:
            loaded = BACKENDS["tensorrt"].load(path)
            predictions = eval_predictions(loaded.infer, bundle, target.preprocess, batch=opt_batch)
            reference = reference_predictions(bundle, target.preprocess, threads=threads)
            metrics = evaluate_artifact(
                loaded.infer,
                bundle,
                target.preprocess,
                batch=opt_batch,
                predictions=predictions,
                min_support=card_min_support(card),
            )
            metrics.pop("batch", None)
            del loaded
            device = describe_device()
            _, entry = engine_entry(
                plan,
                metrics=metrics,
                predictions=predictions,
                eval_set=read_eval_set(bundle),
                card=card,
                reference=reference,
                size_bytes=path.stat().st_size,
                info=info,
                device=device,
                batch=opt_batch,
            )
            step = student_step(
                bundle,
                predictions,
                after=plan.name,
                measured_on=device["id"],
                card=card,
                preprocess=target.preprocess,
            )
            log(
                f"engine: top-1 {metrics['top1']:.4f} on {len(predictions)} images, agreement with "
                f"model.onnx {entry['vs_student']['prediction_agreement']:.4f}"
            )
        if update_card:
            add_engine(bundle, path, name=plan.name, entry=entry, info=info, step=step)
            written = bundle / plan.file
            log(f"engine: {written} added; card.json, card.md and manifest.json updated")
        else:
            with atomic_output(destination) as part:
                shutil.copyfile(path, part)
            written = destination
            log(f"engine: {written} written (bundle unchanged)")
    return {
        "engine": written,
        "name": plan.name,
        "plan": plan.record(),
        "entry": entry,
        "compression_step": step,
        "card_updated": update_card,
    }
