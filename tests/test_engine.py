"""Issue 17: ``edgekd engine`` (a TensorRT engine built on the device, evaluated and added to the
bundle), the TensorRT runner's buffer reuse and onnxruntime's provider options.

TensorRT cannot be installed on the CI machines: every choice (ONNX source, INT8 scales, flags,
DLA, profile, file name), the card and manifest update (with a stand-in engine file and a real
evaluation of stand-in predictions) and the buffer reuse (with a stand-in cudart) are tested
here without it; the real build runs only where TensorRT and a GPU are (deploy/gpu_check.sh).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.bench.backends import file_precision, provider_options
from edgekd.bench.engine import (
    build_bundle_engine,
    choose_source,
    engine_entry,
    engine_file_name,
    engine_model_name,
    plan_engine,
)
from edgekd.bench.evaluate import reference_predictions, student_agreement_bounds
from edgekd.bundle import manifest_problems
from edgekd.bundle.eval_set import read_eval_set
from edgekd.card.io import load_card
from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export.calibration_cache import calibration_algorithm
from edgekd.export.tensorrt import (
    CacheReader,
    DeviceBuffers,
    TensorRTClassifier,
    device_settings,
    tensorrt_status,
)
from edgekd.fairness.metric_table import METRICS
from edgekd.fairness.metrics import evaluate_predictions

INFO = {"tensorrt": "10.3.0", "cuda": "12.6", "gpu": "Orin (nvgpu)"}
JETSON = {
    "id": "nvidia-jetson-orin-nano-developer-kit",
    "gpus": [],
    "jetson": {
        "model": "NVIDIA Jetson Orin Nano Developer Kit",
        "l4t": "36.4.0",
        "jetpack": "6.1+b123",
        "power_mode": "15W",
    },
}


@pytest.fixture
def bundle(tiny_build, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_build.bundle_dir, copy)
    return copy


def _files(path):
    return sorted((p.relative_to(path).as_posix(), p.stat().st_mtime_ns) for p in path.rglob("*"))


# ------------------------------------------------------------------------------ pure choices
def test_engine_names_sources_and_plan(bundle):
    assert engine_file_name("fp16") == "model.fp16.engine"
    assert engine_file_name("int8", 0) == "model.int8.dla0.engine"
    assert engine_model_name("int8", 1) == "tensorrt_int8_dla1"

    assert choose_source(bundle, "fp16") == ("model.onnx", None, None)
    with pytest.raises(
        EdgeKDError,
        match=f"{bundle}: --precision int8: there is neither model.int8.trt.onnx nor calibration.cache",
    ):
        choose_source(bundle, "int8")
    with pytest.raises(EdgeKDError, match="--precision: 'int4'; choose one of: fp16, int8, fp32"):
        choose_source(bundle, "int4")
    (bundle / "calibration.cache").write_bytes(b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    assert choose_source(bundle, "int8") == (
        "model.onnx",
        "calibration cache calibration.cache",
        "calibration.cache",
    )
    shutil.copyfile(bundle / "model.onnx", bundle / "model.int8.trt.onnx")  # Q/DQ file wins
    assert choose_source(bundle, "int8") == ("model.int8.trt.onnx", "Q/DQ nodes of model.int8.trt.onnx", None)

    plan = plan_engine(bundle, precision="int8", dla_core=0, min_batch=1, opt_batch=4, max_batch=16)
    assert plan.flags == ("FP16", "INT8", "GPU_FALLBACK") and plan.device == "DLA"
    assert plan.dla_core == 0 and plan.gpu_fallback
    assert plan.batches == (4, 4, 4)  # DLA: one static batch
    assert plan.input_shapes == ((4, 3, 32, 32),) * 3
    assert plan.file == "model.int8.dla0.engine" and plan.name == "tensorrt_int8_dla0"
    gpu = plan_engine(bundle, precision="fp16", min_batch=1, opt_batch=4, max_batch=16)
    assert gpu.flags == ("FP16",) and gpu.device == "GPU" and gpu.dla_core is None
    assert gpu.input_shapes == ((1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))
    assert plan_engine(bundle, precision="fp32").flags == ()


def test_dla_needs_fp16_or_int8_and_a_core_number():
    assert device_settings("fp16", None) == {"device": "GPU", "dla_core": None, "flags": []}
    assert device_settings("int8", 1) == {"device": "DLA", "dla_core": 1, "flags": ["GPU_FALLBACK"]}
    with pytest.raises(EdgeKDError, match="DLA runs fp16 or int8 only"):
        device_settings("fp32", 0)
    with pytest.raises(EdgeKDError, match="--dla-core: -1"):
        device_settings("fp16", -1)


def test_calibration_cache_is_read_not_written():
    cache = b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\nlogits: 3d2b8f6e\n"
    assert calibration_algorithm(cache) == "IInt8EntropyCalibrator2"
    assert calibration_algorithm(b"TRT-100300-MinMaxCalibration\n") == "IInt8MinMaxCalibrator"
    with pytest.raises(EdgeKDError, match="calibration.cache: not a TensorRT calibration cache"):
        calibration_algorithm(b"\x00\x01binary")
    reader = CacheReader(cache)
    assert reader.read_calibration_cache() == cache
    assert reader.get_batch(["input"]) is None  # never asks for images
    reader.write_calibration_cache(b"other")
    assert reader.read_calibration_cache() == cache


# ------------------------------------------------------------------------ provider options
def test_provider_options_per_file(tmp_path):
    assert file_precision("model.onnx") == "fp32" and file_precision("model.int8.trt.onnx") == "int8"
    assert file_precision("model.fp16.dla0.engine") == "fp16"
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt, cuda, cpu = provider_options(
        providers, model=tmp_path / "model.int8.onnx", sha256="ab" * 32, trt_cache=tmp_path / "cache"
    )
    assert trt[0] == "TensorrtExecutionProvider"
    assert trt[1]["trt_fp16_enable"] is True and trt[1]["trt_int8_enable"] is True
    assert trt[1]["trt_engine_cache_enable"] is True and trt[1]["trt_timing_cache_enable"] is True
    assert trt[1]["trt_engine_cache_path"] == str(tmp_path / "cache" / f"{'ab' * 8}-int8")
    assert cuda == (
        "CUDAExecutionProvider",
        {
            "device_id": 0,
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "arena_extend_strategy": "kSameAsRequested",
            "do_copy_in_default_stream": True,
        },
    )
    assert cpu == "CPUExecutionProvider"
    fp32 = provider_options(providers[:1], model=tmp_path / "model.onnx", sha256="cd" * 32, trt_cache=None)[
        0
    ][1]
    assert fp32["trt_fp16_enable"] is False and fp32["trt_int8_enable"] is False  # fp32, as shipped
    assert "trt_engine_cache_path" not in fp32
    assert (
        provider_options(providers[:1], model=tmp_path / "model.onnx", fp16=True, trt_cache=None)[0][1][
            "trt_fp16_enable"
        ]
        is True
    )
    assert provider_options(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


# --------------------------------------------------------------------------- buffer reuse
class FakeCudart:
    """cuda-python's runtime calls the runner makes, counted; device pointers are integers."""

    class cudaMemcpyKind:  # noqa: N801 (cuda-python's name)
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self):
        self.malloc, self.freed, self.copies, self.next = [], [], 0, 0x1000

    def cudaMalloc(self, nbytes):  # noqa: N802
        self.next += 0x1000
        self.malloc.append(nbytes)
        return 0, self.next

    def cudaFree(self, pointer):  # noqa: N802
        self.freed.append(pointer)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        self.copies += 1
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)


class FakeContext:
    def __init__(self):
        self.shapes, self.addresses, self.runs = [], [], 0

    def set_input_shape(self, name, shape):
        self.shapes.append(shape)

    def get_tensor_shape(self, name):
        return (self.shapes[-1][0], 4)

    def set_tensor_address(self, name, pointer):
        self.addresses.append((name, pointer))

    def execute_async_v3(self, stream):
        self.runs += 1
        return True


def test_device_buffers_are_allocated_once_per_shape():
    cudart = FakeCudart()
    buffers = DeviceBuffers(cudart)
    first = buffers.get(96, 16)
    assert buffers.get(96, 16) == first and cudart.malloc == [96, 16] and cudart.freed == []
    second = buffers.get(384, 64)
    assert second != first and cudart.malloc == [96, 16, 384, 64]
    assert sorted(cudart.freed) == sorted(first)
    buffers.free()
    assert sorted(cudart.freed) == sorted(first + second) and buffers.pointers is None


def test_tensorrt_runner_reuses_buffers_across_calls():
    """The runner's per-call work with a stand-in engine context and cudart: one allocation and
    one shape/address setup per input shape, two copies and one inference per call."""
    cudart, context = FakeCudart(), FakeContext()
    runner = TensorRTClassifier.__new__(TensorRTClassifier)  # no engine file, no TensorRT
    runner._cudart, runner.context, runner._stream = cudart, context, 7
    runner.input_name, runner.output_name = "images", "logits"
    runner._buffers, runner._shape, runner._out = DeviceBuffers(cudart), None, None
    for _ in range(5):
        assert runner.logits(np.zeros((8, 3, 4, 4), np.float32)).shape == (8, 4)
    assert len(cudart.malloc) == 2 and context.shapes == [(8, 3, 4, 4)] and len(context.addresses) == 2
    assert context.runs == 5 and cudart.copies == 10 and cudart.freed == []
    runner.logits(np.zeros((2, 3, 4, 4), np.float32))
    assert len(cudart.malloc) == 4 and len(cudart.freed) == 2 and context.shapes[-1] == (2, 3, 4, 4)
    runner.close()
    assert len(cudart.freed) == 4


# --------------------------------------------------------- card and manifest, stand-in engine
def _stand_in_engine(bundle, tmp_path, *, flip: int = 3, precision="fp16", dla_core=None):
    """A plan for ``bundle``, a stand-in engine file, and the card entry of stand-in predictions:
    model.onnx's own predictions (really computed) with ``flip`` of them changed."""
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    reference = reference_predictions(bundle, preprocess)
    predictions = reference.copy()
    predictions[:flip] = (predictions[:flip] + 1) % len(preprocess["class_names"])
    eval_set = read_eval_set(bundle)
    metrics = evaluate_predictions(
        eval_set.labels,
        predictions,
        eval_set.groups,
        class_names=preprocess["class_names"],
        group_names=preprocess["protected_groups"],
    )
    plan = plan_engine(bundle, precision=precision, dla_core=dla_core)
    engine = tmp_path / plan.file
    engine.write_bytes(b"stand-in serialized engine")
    name, entry = engine_entry(
        plan,
        metrics=metrics,
        predictions=predictions,
        eval_set=eval_set,
        card=load_card(bundle),
        reference=reference,
        size_bytes=engine.stat().st_size,
        info=INFO,
        device=JETSON,
        batch=8,
    )
    return plan, engine, name, entry, metrics, len(reference)


def test_engine_entry_compares_with_model_onnx_and_the_student(bundle, tmp_path):
    plan, _, name, entry, metrics, n = _stand_in_engine(bundle, tmp_path)
    card = load_card(bundle)
    student = card["models"]["student"]["metrics"]
    assert name == "tensorrt_fp16" and entry["kind"] == "tensorrt" and entry["precision"] == "fp16"
    assert entry["file"] == "model.fp16.engine" and entry["built_on_device"] is True
    assert entry["built_on"] == {
        "device": JETSON["id"],
        "gpu": "Orin (nvgpu)",
        "tensorrt": "10.3.0",
        "cuda": "12.6",
        "board": "NVIDIA Jetson Orin Nano Developer Kit",
        "jetpack": "6.1+b123",
        "l4t": "36.4.0",
        "power_mode": "15W",
    }
    assert entry["engine"] == INFO and entry["build"]["flags"] == ["FP16"]
    vs = entry["vs_student"]
    assert vs["prediction_agreement"] == pytest.approx((n - 3) / n)
    assert vs["agreement_with"].startswith("model.onnx through onnxruntime")
    onnx_vs_student = card["models"]["onnx"]["vs_student"]["prediction_agreement"]
    assert vs["student_agreement_bounds"] == student_agreement_bounds((n - 3) / n, onnx_vs_student)
    for metric in METRICS.values():
        assert vs[f"{metric.key}_change"] == pytest.approx(metric.read(metrics) - metric.read(student))
    assert set(entry["ci"]) >= {m.key for m in METRICS.values() if m.interval}
    assert student_agreement_bounds(0.9, 1.0) == [0.9, 0.9]
    assert student_agreement_bounds(0.9, 0.95) == pytest.approx([0.85, 0.95])


def test_adding_an_engine_keeps_the_bundle_verifiable_and_renders_its_row(bundle, tmp_path):
    from edgekd.bench.card_update import add_engine

    plan, engine, name, entry, metrics, _ = _stand_in_engine(bundle, tmp_path, precision="fp16", dla_core=0)
    add_engine(bundle, engine, name=name, entry=entry, info=INFO)
    assert (bundle / "model.fp16.dla0.engine").read_bytes() == b"stand-in serialized engine"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["engines"]["model.fp16.dla0.engine"] == INFO
    assert "model.fp16.dla0.engine" in manifest["files"] and manifest["name"] == "tiny"
    card = load_card(bundle)
    assert card["models"]["tensorrt_fp16_dla0"]["metrics"]["top1"] == metrics["top1"]
    runner = CliRunner()
    verify = runner.invoke(main, ["verify", str(bundle)])
    assert verify.exit_code == 0, verify.output
    shown = runner.invoke(main, ["card", str(bundle)])
    assert shown.exit_code == 0
    row = next(
        line for line in shown.output.splitlines() if line.startswith("| tensorrt_fp16_dla0 | tensorrt")
    )
    assert f"{metrics['top1']:.3f}" in row
    assert "| tensorrt_fp16_dla0 | model.fp16.dla0.engine | " in shown.output  # the drift row
    assert "(with model.onnx; with the student" in shown.output
    assert (
        "tensorrt_fp16_dla0 was built and evaluated on the device: device "
        "nvidia-jetson-orin-nano-developer-kit, gpu Orin (nvgpu), tensorrt 10.3.0" in shown.output
    )
    assert (bundle / "card.md").read_text() in shown.output + "\n"
    assert "tensorrt_fp16_dla0" in (bundle / "card.html").read_text()
    check = runner.invoke(main, ["card", str(bundle), "--check"])
    assert check.exit_code == 0, check.output

    # built again: the same file is replaced, not added twice
    add_engine(bundle, engine, name=name, entry={**entry, "size_bytes": 1}, info={**INFO, "cuda": "12.8"})
    card = load_card(bundle)
    assert [n for n, e in card["models"].items() if e.get("file") == "model.fp16.dla0.engine"] == [name]
    assert card["models"][name]["size_bytes"] == 1
    engines = json.loads((bundle / "manifest.json").read_text())["engines"]
    assert engines["model.fp16.dla0.engine"]["cuda"] == "12.8"
    assert manifest_problems(bundle) == []


def test_engine_gates_use_the_cards_thresholds():
    from edgekd.card.bench import add_engine_evaluation

    teacher = {"kind": "torch", "metrics": {"top1": 0.8, "mean_abs_disparity": 0.1}}
    card = {
        "models": {"teacher": teacher, "onnx": {"kind": "onnx", "file": "model.onnx"}},
        "gates": [
            {"name": "min_top1", "artifact": "onnx", "threshold": 0.5, "passed": True},
            {"name": "onnx_matches_torch", "artifact": "onnx", "threshold": 0.999, "passed": True},
        ],
        "skipped_artifacts": [{"name": "tensorrt_fp16", "skipped": "TensorRT is not installed"}],
    }
    entry = {
        "kind": "tensorrt",
        "file": "model.fp16.engine",
        "metrics": {"top1": 0.4, "mean_abs_disparity": 0.2},
    }
    out = add_engine_evaluation(card, "tensorrt_fp16", entry)
    gate = [g for g in out["gates"] if g["artifact"] == "tensorrt_fp16"]
    assert [(g["name"], g["threshold"], g["passed"]) for g in gate] == [("min_top1", 0.5, False)]
    assert out["skipped_artifacts"] == [] and card["skipped_artifacts"]  # the input is not changed
    assert list(out["models"]) == ["teacher", "onnx", "tensorrt_fp16"]


# ------------------------------------------------------------------ the command, without TensorRT
@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "int8"], "--precision int8: "),
        (["--precision", "fp32", "--dla-core", "0"], "DLA runs fp16 or int8 only"),
        (["--workspace-mb", "4"], "--workspace-mb: 4; must be at least 16"),
        (["--min-batch", "8", "--opt-batch", "4"], "min_batch <= opt_batch"),
    ],
)
def test_engine_mistakes_are_one_line_and_touch_nothing(bundle, args, message):
    before = _files(bundle)
    result = CliRunner().invoke(main, ["engine", str(bundle), *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert _files(bundle) == before


def test_engine_without_tensorrt_says_so_and_touches_nothing(bundle, tmp_path):
    if tensorrt_status() is None:
        pytest.skip("TensorRT and a GPU are here")
    before = _files(bundle)
    result = CliRunner().invoke(main, ["engine", str(bundle), "--precision", "fp16"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: edgekd engine: {tensorrt_status()}"
    assert _files(bundle) == before
    with pytest.raises(EdgeKDError, match="is inside the bundle"):
        build_bundle_engine(bundle, update_card=False, out=bundle)
    (bundle / "card.md").write_text("changed")
    with pytest.raises(EdgeKDError, match="does not match its manifest"):
        build_bundle_engine(bundle)


def test_engine_builds_evaluates_and_updates_the_bundle_where_tensorrt_runs(bundle):
    pytest.importorskip("tensorrt")
    if tensorrt_status() is not None:
        pytest.skip(tensorrt_status())
    result = build_bundle_engine(bundle, precision="fp16", max_batch=16)
    assert result["engine"] == bundle / "model.fp16.engine" and result["card_updated"]
    assert manifest_problems(bundle) == []
    entry = load_card(bundle)["models"]["tensorrt_fp16"]
    assert entry["built_on_device"] and entry["vs_student"]["prediction_agreement"] > 0.95


def test_engine_command_end_to_end_with_a_stand_in_tensorrt(bundle, tmp_path, monkeypatch):
    """``edgekd engine`` with TensorRT's calls replaced: the build writes a stand-in file and the
    engine "runs" model.onnx through onnxruntime, so every step after the build is the real one."""
    import edgekd.export.tensorrt as trt_module
    from edgekd.bench.backends import BACKENDS, BenchBackend, load_onnxruntime

    calls = []

    def build_engine(onnx_path, out_path, **options):
        calls.append((onnx_path.name, options))
        out_path.write_bytes(b"stand-in engine")
        return out_path

    def load(path, **options):  # the engine's outputs: model.onnx's on the CPU
        return load_onnxruntime(bundle / "model.onnx", providers=["CPUExecutionProvider"])

    monkeypatch.setattr(trt_module, "tensorrt_status", lambda: None)
    monkeypatch.setattr(trt_module, "build_engine", build_engine)
    monkeypatch.setattr(trt_module, "engine_info", lambda: INFO)
    monkeypatch.setitem(BACKENDS, "tensorrt", BenchBackend("tensorrt", ("engine",), "stand-in", load))
    (bundle / "calibration.cache").write_bytes(b"TRT-100300-EntropyCalibration2\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    from edgekd.bundle import write_manifest

    write_manifest(bundle, name=manifest["name"], version=manifest["version"])

    result = CliRunner().invoke(main, ["engine", str(bundle), "--precision", "int8", "--max-batch", "16"])
    assert result.exit_code == 0, result.output
    ((name, options),) = calls
    assert name == "model.onnx" and options["precision"] == "int8" and not options["explicit_int8"]
    assert options["calibration_cache"] == bundle / "calibration.cache" and options["dla_core"] is None
    assert (options["min_batch"], options["opt_batch"], options["max_batch"]) == (1, 8, 16)
    assert "tensorrt_int8" in result.stdout and f"engine: {bundle / 'model.int8.engine'}" in result.stdout
    entry = load_card(bundle)["models"]["tensorrt_int8"]
    assert entry["vs_student"]["prediction_agreement"] == 1.0  # it ran model.onnx
    assert entry["build"]["int8_scales"] == "calibration cache calibration.cache"
    assert entry["metrics"]["top1"] == load_card(bundle)["models"]["onnx"]["metrics"]["top1"]
    assert manifest_problems(bundle) == []

    out = tmp_path / "engines"
    out.mkdir()
    before = _files(bundle)
    result = CliRunner().invoke(main, ["engine", str(bundle), "--no-update-card", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.fp16.engine").read_bytes() == b"stand-in engine" and _files(bundle) == before
