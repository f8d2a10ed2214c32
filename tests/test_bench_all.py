"""Issue 17: ``edgekd bench BUNDLE --all``: every artifact of a bundle, each through its backend, in
one table, with on-device metrics and agreement; ``--json`` and ``--update-card`` for all of them.

The tiny recipe ships model.onnx only; a copy of its bundle gets a second ONNX file (the fp16
conversion the build makes with ``export.fp16``) and, for the skip path, a stand-in engine.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from edgekd.bench.all_artifacts import all_headers, all_rows, bundle_artifacts, run_bench_all
from edgekd.bench.target import resolve_target
from edgekd.bundle import manifest_problems, write_manifest
from edgekd.card.io import load_card
from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export.fp16 import convert_fp16
from edgekd.export.tensorrt import tensorrt_status
from edgekd.fairness.metric_table import METRICS


@pytest.fixture
def bundle(tiny_build, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_build.bundle_dir, copy)
    convert_fp16(copy / "model.onnx", copy / "model.fp16.onnx")
    manifest = json.loads((copy / "manifest.json").read_text())
    write_manifest(copy, name=manifest["name"], version=manifest["version"])
    return copy


def test_bench_all_eval_lists_every_artifact_with_its_numbers(bundle, tmp_path):
    out = tmp_path / "all.json"
    result = CliRunner().invoke(main, ["bench", str(bundle), "--all", "--eval", "--batch-sizes", "1,4",
                                       "--iterations", "5", "--warmup", "1", "--threads", "1",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:4] == ["artifact", "format", "backend", "size"]
    for label in ("p50", "p99", "images/s", "top-1", "agree"):
        assert label in header
    rows = [line.split() for line in lines[2:6]]  # artifact, format (3 words), backend, size, batch
    assert [(r[0], r[6]) for r in rows] == [("model.onnx", "1"), ("model.onnx", "4"),
                                            ("model.fp16.onnx", "1"), ("model.fp16.onnx", "4")]
    saved = json.loads(out.read_text())
    assert saved["schema"] == "edgekd.bench-all/v1" and saved["skipped"] == []
    assert [r["artifact"]["file"] for r in saved["results"]] == ["model.onnx", "model.fp16.onnx"]
    card = load_card(bundle)
    for r in saved["results"]:
        assert r["backend"] == "onnxruntime" and [t["batch"] for t in r["results"]] == [1, 4]
        assert all(t["latency_ms"]["p50"] > 0 and t["throughput_ips"] > 0 for t in r["results"])
        assert r["eval"]["n"] == 128 and r["eval"]["agreement"]["with"] == "model.onnx"
    onnx, fp16 = saved["results"]
    assert onnx["eval"]["agreement"]["prediction_agreement"] == 1.0
    assert onnx["eval"]["top1"] == card["models"]["onnx"]["metrics"]["top1"]  # as at build
    assert fp16["eval"]["agreement"]["prediction_agreement"] > 0.9
    assert saved["reference"]["vs_student_at_build"] == card["models"]["onnx"]["vs_student"][
        "prediction_agreement"]

    table = all_rows(saved)
    assert len(table) == 4 and set(all_headers(table)) >= {m.key for m in METRICS.values()}
    first = table[0]
    for metric in METRICS.values():
        assert first[metric.key] == metric.read(onnx["eval"])
    assert first["agreement"] == 1.0 and table[1]["top1"] is None  # metrics once per artifact
    assert "agreement: with model.onnx through onnxruntime (CPUExecutionProvider)" in result.stdout
    assert manifest_problems(bundle) == []  # --all alone changes nothing

    merged = CliRunner().invoke(main, ["bench", str(bundle), "--from-json", str(out), "--update-card"])
    assert merged.exit_code == 0, merged.output
    bench = load_card(bundle)["bench"][saved["device"]["id"]]["onnxruntime"]
    assert set(bench) == {"model.onnx", "model.fp16.onnx"}
    assert bench["model.fp16.onnx"]["eval"]["agreement"]["with"] == "model.onnx"
    assert manifest_problems(bundle) == []
    shown = CliRunner().invoke(main, ["card", str(bundle)])
    assert "| model.fp16.onnx | 1 |" in shown.output and "agree model.onnx" in shown.output


def test_bench_all_update_card_merges_every_artifact(bundle):
    result = CliRunner().invoke(main, ["bench", str(bundle), "--all", "--iterations", "3", "--warmup",
                                       "0", "--update-card"])
    assert result.exit_code == 0, result.output
    card = load_card(bundle)
    (by_backend,) = card["bench"].values()
    assert set(by_backend["onnxruntime"]) == {"model.onnx", "model.fp16.onnx"}
    assert manifest_problems(bundle) == []


def test_an_engine_that_cannot_run_here_is_listed_as_skipped(bundle):
    if tensorrt_status() is None:
        pytest.skip("TensorRT runs here")
    (bundle / "model.fp16.engine").write_bytes(b"stand-in")
    artifacts = bundle_artifacts(resolve_target(bundle))
    assert [(a["file"], a["backend"]) for a in artifacts] == [
        ("model.onnx", "onnxruntime"), ("model.fp16.onnx", "onnxruntime"), ("model.fp16.engine", "tensorrt")]
    assert artifacts[2]["skipped"].startswith("a TensorRT engine, but TensorRT's Python bindings")
    result = run_bench_all(bundle, iterations=2, warmup=0)
    assert [r["artifact"]["file"] for r in result["results"]] == ["model.onnx", "model.fp16.onnx"]
    assert result["skipped"][0]["file"] == "model.fp16.engine"


@pytest.mark.parametrize("args, message", [
    (["--backend", "onnxruntime"], "--all with --backend onnxruntime"),
    (["--tegrastats"], "--all with --tegrastats"),
])
def test_bench_all_mistakes_are_one_line(bundle, args, message):
    result = CliRunner().invoke(main, ["bench", str(bundle), "--all", *args])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_all_needs_a_bundle_directory(bundle):
    with pytest.raises(EdgeKDError, match="--all: .*model.onnx is not a bundle directory"):
        run_bench_all(bundle / "model.onnx")
