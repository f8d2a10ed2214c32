"""``edgekd bench`` end to end on a tiny ONNX classifier (built with onnx.helper, no torch).

The model averages each colour channel and maps channel c to class c (identity weights), so on
solid-colour images its predictions are known by hand. The bundle is written here: model.onnx,
preprocess.json, eval_set.npz, a card and a manifest.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime
import pytest
from bench_samples import NANO, TRT10
from click.testing import CliRunner
from onnx import TensorProto, helper

from edgekd.bench.card_update import update_card
from edgekd.bench.runner import run_bench
from edgekd.bundle import manifest_problems, write_manifest
from edgekd.bundle.eval_set import read_eval_set, write_eval_set
from edgekd.card.markdown import render_markdown
from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.fairness.metrics import evaluate_predictions

CLASSES = ["red", "green", "blue"]
GROUPS = ["a", "b"]
SIZE = 8


def tiny_onnx(path, *, batch="batch"):
    """images (N, 3, 8, 8) -> GlobalAveragePool -> Flatten -> Gemm(identity) -> logits (N, 3)."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel()),
            helper.make_tensor("b", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def eval_images():
    """12 solid images, lit channel = predicted class; labels agree on 9 of them."""
    lit = np.array([0, 1, 2] * 4)
    images = np.zeros((12, SIZE, SIZE, 3), dtype=np.uint8)
    images[np.arange(12), :, :, lit] = 255
    labels = lit.copy()
    labels[[2, 5, 8]] = 0  # three blue images labelled red: wrong predictions
    groups = np.array([0] * 6 + [1] * 6)
    return images, labels, groups, lit


def minimal_card(metrics):
    """Just the keys card.md rendering reads, with real metrics."""
    entry = {"kind": "torch", "arch": "tiny", "size_bytes": 1000, "metrics": metrics}
    change = {"top1_change": 0.0, "mean_abs_disparity_change": 0.0}
    return {
        "schema": "edgekd.card/v1",
        "name": "tiny",
        "version": "0.1.0",
        "task": {"type": "image-classification", "classes": CLASSES},
        "data": {
            "source": "solid",
            "summary": "solid colours",
            "protected_attribute": "g",
            "groups": GROUPS,
            "splits": {"train": 0, "val": 0, "test": 12},
            "synthetic": True,
        },
        "distillation": {"method": "kd"},
        "models": {
            "teacher": entry,
            "baseline": entry,
            "student": entry,
            "onnx": {**entry, "kind": "onnx", "file": "model.onnx"},
        },
        "comparisons": {"teacher_to_student": change, "baseline_to_student": change},
        "bench": {},
        "gates": [],
        "provenance": {"recipe_sha256": "0" * 64, "seed": 0, "versions": {"python": "3"}},
    }


@pytest.fixture
def bundle(tmp_path):
    b = tmp_path / "bundle"
    b.mkdir()
    tiny_onnx(b / "model.onnx")
    images, labels, groups, lit = eval_images()
    write_eval_set(b, images, labels, groups)
    (b / "preprocess.json").write_text(
        json.dumps(
            {
                "input_size": [3, SIZE, SIZE],
                "layout": "NCHW",
                "pixel_scale": 1 / 255,
                "mean": [0.5] * 3,
                "std": [0.25] * 3,
                "class_names": CLASSES,
                "protected_attribute": "g",
                "protected_groups": GROUPS,
            }
        )
    )
    metrics = evaluate_predictions(labels, lit, groups, class_names=CLASSES, group_names=GROUPS)
    card = minimal_card(metrics)
    (b / "card.json").write_text(json.dumps(card))
    (b / "card.md").write_text(render_markdown(card))
    write_manifest(b, name="tiny", version="0.1.0")
    return b


def invoke(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)])


def test_eval_set_round_trip_and_checks(tmp_path):
    images, labels, groups, _ = eval_images()
    path = write_eval_set(tmp_path, images, labels, groups)
    assert path == tmp_path / "eval_set.npz"
    back = read_eval_set(path)
    assert np.array_equal(back.images, images) and back.labels.dtype == np.int64
    assert np.array_equal(back.groups, groups)
    with pytest.raises(EdgeKDError, match=r"images must be uint8 of shape \(N, H, W, 3\)"):
        write_eval_set(tmp_path / "x.npz", images.astype(np.float32), labels, groups)
    with pytest.raises(EdgeKDError, match="labels must be 12 integers"):
        write_eval_set(tmp_path / "x.npz", images, labels[:5], groups)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(EdgeKDError, match="not an edgekd evaluation set"):
        read_eval_set(tmp_path / "junk.npz")
    assert not (tmp_path / "x.npz").exists()


def test_bench_a_bundle_on_cpu_writes_json_and_updates_the_card(bundle, tmp_path):
    out = tmp_path / "result.json"
    res = invoke(
        bundle,
        "--batch-sizes",
        "1,4",
        "--iterations",
        "30",
        "--warmup",
        "2",
        "--threads",
        "1",
        "--eval",
        "--json",
        out,
        "--update-card",
    )
    assert res.exit_code == 0, res.output
    assert "images/s" in res.stdout and "eval on device (12 images): top-1 0.7500" in res.stdout
    result = json.loads(out.read_text())
    assert result["schema"] == "edgekd.bench/v1" and result["backend"] == "onnxruntime"
    assert result["runtime"]["providers"] == ["CPUExecutionProvider"]
    assert result["settings"]["input_shape"] == [3, SIZE, SIZE]
    assert [r["batch"] for r in result["results"]] == [1, 4]
    for r in result["results"]:
        lat = r["latency_ms"]
        assert r["iterations"] == 30 and len(r["samples_ms"]) == 30
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert r["throughput_ips"] > 0 and r["first_inference_ms"] > 0 and r["peak_rss_mb"] > 0
        assert r["power"] is None
    assert result["session_s"] > 0
    ev = result["eval"]
    # hand-worked: 9 of 12 right. "red" labels: group a images 0, 2, 3, 5 (2 and 5 are blue, so
    # missed) -> 2/4; group b images 6, 8, 9 (8 missed) -> 2/3; disparity 1/2 - 2/3 = -1/6.
    # "blue" labels: only image 11 (group b), predicted blue -> a undefined, b 1.0.
    assert ev["top1"] == 0.75 and ev["build_top1"] == 0.75 and ev["top1_change_vs_build"] == 0.0
    red, _, blue = ev["per_class"]
    assert red["recall_by_group"] == pytest.approx({"a": 0.5, "b": 2 / 3})
    assert red["disparity"] == pytest.approx(-1 / 6)
    assert blue["recall_by_group"] == {"a": None, "b": 1.0}
    card = json.loads((bundle / "card.json").read_text())
    entry = card["bench"][result["device"]["id"]]["onnxruntime"]["model.onnx"]
    assert entry["results"][1]["batch"] == 4 and "samples_ms" not in entry["results"][1]
    assert "path" not in entry["artifact"] and entry["artifact"]["sha256"] == result["artifact"]["sha256"]
    assert manifest_problems(bundle) == []
    assert CliRunner().invoke(main, ["verify", str(bundle)]).exit_code == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["name"] == "tiny" and manifest["version"] == "0.1.0"


def test_duration_mode_and_a_model_file_inside_the_bundle(bundle):
    result = run_bench(bundle / "model.onnx", batch_sizes=[2], duration=0.05, warmup=0, providers="cpu")
    assert result["bundle"] == {"name": "tiny", "version": "0.1.0"}
    r = result["results"][0]
    assert r["iterations"] >= 1 and r["wall_s"] >= 0.05
    assert r["throughput_ips"] == pytest.approx(2 * r["iterations"] / r["wall_s"])


def test_a_second_update_replaces_the_same_device_backend_artifact(bundle):
    result = run_bench(bundle, iterations=3, warmup=0)
    update_card(bundle, result)
    update_card(bundle, result)
    card = json.loads((bundle / "card.json").read_text())
    assert list(card["bench"]) == [result["device"]["id"]]
    assert list(card["bench"][result["device"]["id"]]["onnxruntime"]) == ["model.onnx"]


def test_a_result_from_a_device_merges_into_the_bundle_it_measured(bundle, tmp_path):
    saved = tmp_path / "device.json"
    assert invoke(bundle, "--iterations", "3", "--json", saved).exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)  # the build machine's copy of the same release
    res = invoke(copy, "--from-json", saved, "--update-card")
    assert res.exit_code == 0, res.output
    assert "onnxruntime  model.onnx" in res.stdout
    card = json.loads((copy / "card.json").read_text())
    device = json.loads(saved.read_text())["device"]["id"]
    assert card["bench"][device]["onnxruntime"]["model.onnx"]["results"][0]["iterations"] == 3
    assert manifest_problems(copy) == []

    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    model = onnx.load(str(other / "model.onnx"))
    model.graph.initializer[1].float_data[:] = [1.0, 0.0, 0.0]  # a different model, same name
    onnx.save(model, str(other / "model.onnx"))
    write_manifest(other, name="tiny", version="0.1.0")
    res = invoke(other, "--from-json", saved, "--update-card")
    assert res.exit_code == 2
    assert "differs from the model.onnx the bench result measured" in res.stderr
    (tmp_path / "card.json").write_text('{"schema": "edgekd.card/v1"}')
    res = invoke(other, "--from-json", tmp_path / "card.json")
    assert res.exit_code == 2
    assert "not an edgekd bench result (schema edgekd.bench/v1 or edgekd.bench-all/v1)" in res.stderr


def test_update_refuses_a_bundle_that_no_longer_verifies(bundle):
    (bundle / "preprocess.json").write_text("{}")
    with pytest.raises(EdgeKDError, match="does not match its manifest before the update"):
        update_card(
            bundle,
            {
                "device": {"id": "x"},
                "backend": "onnxruntime",
                "artifact": {"file": "model.onnx"},
                "results": [],
            },
        )


def test_fixed_batch_model_runs_only_its_batch(tmp_path):
    path = tiny_onnx(tmp_path / "fixed.onnx", batch=1)
    result = run_bench(path, batch_sizes="1", iterations=3, warmup=0)  # C, H, W read from the model
    assert result["settings"]["input_shape"] == [3, SIZE, SIZE] and result["bundle"] is None
    with pytest.raises(EdgeKDError, match="built for batch size 1 only; use --batch-sizes 1"):
        run_bench(path, batch_sizes="1,8", iterations=3)
    # by default 1 and 8, less what the model cannot take: here its one batch size
    assert [r["batch"] for r in run_bench(path, iterations=2, warmup=0)["results"]] == [1]


def test_a_card_with_a_result_from_before_repeats_still_updates_and_renders(bundle):
    old = run_bench(bundle, batch_sizes="1", iterations=4, warmup=0)
    old["settings"].pop("repeats")
    for r in old["results"]:  # what edgekd.bench/v1 wrote before the spread columns
        for key in ("repeats", "repeat_p50_ms"):
            r.pop(key)
        for q in ("p10", "p25", "p75"):
            r["latency_ms"].pop(q)
    update_card(bundle, old, log=lambda m: None)
    shown = render_markdown(json.loads((bundle / "card.json").read_text()))
    assert "| model.onnx | 1 |" in shown and "p10-p90 ms" not in shown  # no column nobody measured
    res = invoke(bundle, "--iterations", "4", "--warmup", "0", "--update-card")
    assert res.exit_code == 0, res.output
    assert "p10-p90 ms" in (bundle / "card.md").read_text()
    entry = json.loads((bundle / "card.json").read_text())["bench"][old["device"]["id"]]["onnxruntime"]
    assert [r["batch"] for r in entry["model.onnx"]["results"]] == [1, 8]
    assert all(r["repeats"] == 4 and len(r["repeat_p50_ms"]) == 4 for r in entry["model.onnx"]["results"])
    assert manifest_problems(bundle) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["{b}", "--backend", "openvino"], "--backend: unknown backend 'openvino'; choose from: auto, "),
        (["{b}", "--batch-sizes", "1,x"], "--batch-sizes: '1,x' is not a comma-separated list"),
        (["{b}", "--batch-sizes", "0"], "--batch-sizes: '0' is not a comma-separated list"),
        (["{t}/missing.onnx"], "missing.onnx: no such file or directory"),
        (["{t}"], "a directory but not an edgekd bundle"),
        (["{t}/notes.txt"], "unsupported model file '.txt'"),
        (["{t}/junk.onnx"], "junk.onnx: onnxruntime cannot load it as an ONNX model"),
        (["{t}/model.fp16.engine"], "a TensorRT engine, but TensorRT's Python bindings cannot be imported"),
        (["{b}", "--backend", "tensorrt"], "--backend tensorrt runs a TensorRT .engine, and there is none"),
        (["{b}", "--backend", "torch"], "--backend torch runs a TorchScript .pt"),
        (["{b}", "--providers", "cuda"], "--providers: 'cuda' is not available in this onnxruntime"),
        (["{b}", "--iterations", "5", "--duration", "1"], "give one of them, not both"),
        (["{b}", "--iterations", "0"], "--iterations: 0; must be a positive integer"),
        (["{b}", "--repeats", "0"], "--repeats: 0; must be a positive integer"),
        (["{t}/model.onnx", "--eval"], "model.onnx is not in a bundle; --eval reads the bundle's"),
        (["{b}", "--update-card", "--json", "{b}/r.json"], "r.json is inside the bundle and would break"),
        (["{t}/model.onnx", "--update-card"], "--update-card: {t}/model.onnx is not in a bundle"),
    ],
)
def test_bad_inputs_get_one_line_and_exit_2(bundle, tmp_path, args, message):
    if "bindings" in message and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here, so an engine is not an error")
    if "'cuda'" in message and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    message = message.format(t=tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "junk.onnx").write_text("not a protobuf")
    (tmp_path / "model.fp16.engine").write_bytes(b"\x00" * 16)
    tiny_onnx(tmp_path / "model.onnx")
    res = invoke(*[a.format(b=bundle, t=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr


def test_eval_needs_the_eval_set_in_the_bundle(bundle):
    (bundle / "eval_set.npz").unlink()
    write_manifest(bundle, name="tiny", version="0.1.0")
    res = invoke(bundle, "--eval", "--iterations", "2")
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        f"error: --eval: {bundle} has no eval_set.npz; build with bundle.include_eval_set: true"
    )


def test_tegrastats_absent_is_one_line(bundle):
    if shutil.which("tegrastats"):
        pytest.skip("tegrastats is present: this is a Jetson")
    res = invoke(bundle, "--tegrastats", "--iterations", "2")
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: --tegrastats: tegrastats not found on PATH; it comes with "
        "Jetson Linux (L4T), so power can only be sampled on a Jetson"
    )


def fake_tool(directory, name, body):
    """An executable shell script standing in for an NVIDIA tool on PATH."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_tegrastats_sampler_with_a_stand_in_tegrastats(bundle, tmp_path, monkeypatch):
    """The subprocess, reader thread and power summary, fed the Nano line every 20 ms."""
    tools = tmp_path / "tools"
    tools.mkdir()
    fake_tool(
        tools, "tegrastats", f'echo "$@" > {tools}/args\nwhile true; do echo "{NANO}"; sleep 0.02; done\n'
    )
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    result = run_bench(bundle, duration=0.3, warmup=0, tegrastats=True, tegrastats_interval_ms=20)
    r = result["results"][0]
    power = r["power"]
    assert (tools / "args").read_text().split() == ["--interval", "20"]
    assert power["samples"] >= 2 and power["measured"] == "POM_5V_IN"
    assert power["avg_w"] == pytest.approx(2.003) and power["peak_w"] == pytest.approx(2.003)
    # energy per image = 2.003 W x timed seconds / images, in mJ
    assert power["energy_per_image_mj"] == pytest.approx(2.003 * r["wall_s"] / r["iterations"] * 1000)
    assert result["settings"]["tegrastats_interval_ms"] == 20


def test_trtexec_backend_with_a_stand_in_trtexec(bundle, tmp_path, monkeypatch):
    """The command edgekd builds, and the summary it reads back (TensorRT 10.3 output)."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "out.txt").write_text(TRT10)
    fake_tool(tools, "trtexec", f'echo "$@" >> {tools}/args\ncat {tools}/out.txt\n')
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    result = run_bench(bundle, backend="trtexec", batch_sizes="1,4", iterations=50)
    calls = (tools / "args").read_text().splitlines()
    assert calls[1].split() == [
        f"--onnx={bundle / 'model.onnx'}",
        "--shapes=images:4x3x8x8",
        "--warmUp=200",
        "--iterations=50",
        "--duration=0",
    ]
    assert result["runtime"] == {"name": "trtexec", "version": "10.3.0", "warmup_ms": 200}
    four = result["results"][1]
    assert four["throughput_ips"] == pytest.approx(318.007 * 4)
    assert four["latency_ms"]["p99"] == 3.15039 and four["trtexec"]["gpu_compute_ms"]["p50"] == 3.14062
    with pytest.raises(EdgeKDError, match="--eval: trtexec only times"):
        run_bench(bundle, backend="trtexec", evaluate=True)


def test_tegrastats_sampling_on_a_jetson(bundle):
    if shutil.which("tegrastats") is None:
        pytest.skip("no tegrastats: not a Jetson")
    result = run_bench(bundle, duration=1.0, tegrastats=True, tegrastats_interval_ms=100)
    power = result["results"][0]["power"]
    assert power["samples"] >= 1


def test_trtexec_backend_where_trtexec_exists(bundle):
    from edgekd.bench.trtexec import find_trtexec

    try:
        find_trtexec()
    except EdgeKDError:
        pytest.skip("no trtexec here")
    result = run_bench(bundle, backend="trtexec", batch_sizes="1", iterations=20)
    assert result["results"][0]["throughput_ips"] > 0


def test_tensorrt_backend_where_tensorrt_imports(bundle):
    pytest.importorskip("tensorrt")
    pytest.importorskip("edgekd.export.tensorrt")
    from edgekd.bench.trtexec import find_trtexec

    try:
        trtexec = find_trtexec()
    except EdgeKDError:
        pytest.skip("no trtexec to build the test engine with")
    engine = bundle / "model.fp32.engine"
    subprocess.run(
        [
            trtexec,
            f"--onnx={bundle / 'model.onnx'}",
            f"--saveEngine={engine}",
            "--shapes=images:4x3x8x8",
            "--skipInference",
        ],
        check=True,
        capture_output=True,
    )
    result = run_bench(engine, backend="tensorrt", batch_sizes="4", iterations=20, evaluate=True)
    assert result["backend"] == "tensorrt" and result["results"][0]["throughput_ips"] > 0
    assert result["eval"]["top1"] == 0.75


def test_torch_backend_runs_a_torch_export_file_when_asked(bundle):
    torch = pytest.importorskip("torch")

    class ChannelMeans(torch.nn.Module):  # the same function as tiny_onnx
        def forward(self, x):
            return x.mean(dim=(2, 3))

    program = torch.export.export(
        ChannelMeans(), (torch.zeros(2, 3, SIZE, SIZE),), dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}}
    )
    torch.export.save(program, str(bundle / "model.pt2"))
    write_manifest(bundle, name="tiny", version="0.1.0")
    result = run_bench(bundle, backend="torch", batch_sizes="1,3", iterations=5, threads=1, evaluate=True)
    assert result["backend"] == "torch" and result["artifact"]["file"] == "model.pt2"
    assert result["runtime"]["threads"] == 1
    assert [r["batch"] for r in result["results"]] == [1, 3]
    assert result["eval"]["top1"] == 0.75 and result["eval"]["build_top1"] is None


def test_bench_card_and_verify_run_without_torch(bundle, tmp_path):
    """As on a device with only `pip install edgekd`: torch, torchvision and timm cannot import."""
    script = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('torch', 'torchvision', 'timm'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, NoTorch())
        from edgekd.cli import main
        for args in (['bench', {str(bundle)!r}, '--iterations', '3', '--eval', '--update-card'],
                     ['bench', {str(bundle)!r}, '--all', '--iterations', '3', '--eval'],
                     ['card', {str(bundle)!r}], ['verify', {str(bundle)!r}],
                     ['card', {str(bundle)!r}, '--check']):
            try:
                main(args, standalone_mode=False)
            except SystemExit as exit:
                assert exit.code in (0, None), (args, exit.code)
        assert 'torch' not in sys.modules
        print('TORCH-FREE OK')
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH-FREE OK" in proc.stdout


def test_device_side_modules_import_no_torch():
    code = (
        "import sys, edgekd.bench, edgekd.bench.runner, edgekd.bench.backends, "
        "edgekd.bench.trtexec, edgekd.bench.tegrastats, edgekd.bench.device, "
        "edgekd.bench.evaluate, edgekd.bench.engine, edgekd.bench.all_artifacts, "
        "edgekd.export.tensorrt, edgekd.bundle.eval_set, edgekd.card.bench, edgekd.cli; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
