"""Issue 17: ``edgekd bench BUNDLE --all``: every artifact of a bundle, each through its backend, in
one table, with on-device metrics and agreement; ``--json`` and ``--update-card`` for all of them.

The tiny recipe ships model.onnx only; a copy of its bundle gets a second ONNX file (the fp16
conversion the build makes with ``export.fp16``) and, for the skip paths, a stand-in engine and
the TensorRT form of the INT8 model (quantized here as the build does for ``model.int8.trt.onnx``).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime
import pytest
from click.testing import CliRunner

from edgekd.bench.all_artifacts import (
    TRT_FORM_SKIPPED,
    all_headers,
    all_rows,
    bundle_artifacts,
    run_bench_all,
)
from edgekd.bench.backends import gpu_providers
from edgekd.bench.target import resolve_target
from edgekd.bench.timing import split_calls
from edgekd.bundle import manifest_problems, write_manifest
from edgekd.bundle.eval_set import read_eval_set
from edgekd.card.bench import ms_range
from edgekd.card.io import load_card
from edgekd.card.markdown import render_markdown
from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export.fp16 import convert_fp16
from edgekd.export.int8 import quantize_int8
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


CPU_ONLY = not gpu_providers(onnxruntime.get_available_providers())


@pytest.fixture
def trt_form_bundle(bundle):
    """The bundle with ``model.int8.trt.onnx``: symmetric int8 Q/DQ, float biases, as exported."""
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    images = read_eval_set(bundle, preprocess).images[:32]
    quantize_int8(
        bundle / "model.onnx",
        bundle / "model.int8.trt.onnx",
        images,
        preprocess["mean"],
        preprocess["std"],
        activations="int8",
        symmetric=True,
        quantize_bias=False,
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    write_manifest(bundle, name=manifest["name"], version=manifest["version"])
    return bundle


@pytest.mark.skipif(not CPU_ONLY, reason="onnxruntime has TensorRT or CUDA here: the form is timed")
def test_bench_all_defaults_batch_1_and_8_with_spread_and_the_trt_form_skipped(trt_form_bundle, tmp_path):
    out = tmp_path / "all.json"
    result = CliRunner().invoke(
        main, ["bench", str(trt_form_bundle), "--all", "--threads", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert [r["artifact"]["file"] for r in saved["results"]] == ["model.onnx", "model.fp16.onnx"]
    for r in saved["results"]:
        assert r["settings"]["batch_sizes"] == [1, 8] and r["settings"]["repeats"] == 5
        assert [t["batch"] for t in r["results"]] == [1, 8]
        for t in r["results"]:
            lat, samples = t["latency_ms"], t["samples_ms"]
            assert t["iterations"] == 200 == len(samples) and t["repeats"] == 5
            assert lat["p10"] == pytest.approx(np.percentile(samples, 10))
            assert lat["p90"] == pytest.approx(np.percentile(samples, 90))
            assert lat["min"] <= lat["p10"] <= lat["p25"] <= lat["p50"] <= lat["p75"] <= lat["p90"]
            loops = np.split(np.array(samples), np.cumsum(split_calls(200, 5))[:-1])
            assert t["repeat_p50_ms"] == [float(np.median(loop)) for loop in loops]
    (skipped,) = saved["skipped"]
    assert skipped["file"] == "model.int8.trt.onnx" and skipped["reason"] == TRT_FORM_SKIPPED
    assert skipped["format"] == "ONNX int8 TensorRT form"

    lines = result.stdout.splitlines()
    header = lines[0]
    assert "p50 ms" in header and "p10-p90 ms" in header and "p50 of repeats" in header
    table = {(line.split()[0], line.split()[6]): line for line in lines[2:6]}
    assert set(table) == {(f, b) for f in ("model.onnx", "model.fp16.onnx") for b in ("1", "8")}
    for r in saved["results"]:
        for t in r["results"]:
            row = table[(r["artifact"]["file"], str(t["batch"]))]
            assert ms_range(t["latency_ms"]["p10"], t["latency_ms"]["p90"]) in row.split()
            assert ms_range(min(t["repeat_p50_ms"]), max(t["repeat_p50_ms"])) in row.split()
    trt_row = lines[6].split()
    assert trt_row[0] == "model.int8.trt.onnx" and "TensorRT form" in lines[6] and "skipped" in trt_row
    assert f"skipped model.int8.trt.onnx: {TRT_FORM_SKIPPED}" in lines
    assert "\n" not in TRT_FORM_SKIPPED and "--include-trt-form" in TRT_FORM_SKIPPED

    merged = CliRunner().invoke(
        main, ["bench", str(trt_form_bundle), "--from-json", str(out), "--update-card"]
    )
    assert merged.exit_code == 0, merged.output
    entry = load_card(trt_form_bundle)["bench"][saved["device"]["id"]]["onnxruntime"]["model.onnx"]
    assert entry["results"][1]["repeat_p50_ms"] == saved["results"][0]["results"][1]["repeat_p50_ms"]
    assert "p10-p90 ms" in render_markdown(load_card(trt_form_bundle))
    assert manifest_problems(trt_form_bundle) == []


def test_the_trt_form_is_timed_and_labelled_when_asked(trt_form_bundle):
    result = run_bench_all(
        trt_form_bundle, batch_sizes="1", iterations=4, warmup=0, repeats=2, include_trt_form=True
    )
    assert [r["artifact"]["file"] for r in result["results"]] == [
        "model.onnx",
        "model.fp16.onnx",
        "model.int8.trt.onnx",
    ] and result["skipped"] == []
    trt = all_rows(result)[-1]
    assert trt["artifact"] == "model.int8.trt.onnx" and trt["batch"] == 1 and trt["p50_ms"] > 0
    provider = onnxruntime.get_available_providers()[0].replace("ExecutionProvider", "")
    assert (
        trt["format"].startswith("ONNX int8 TensorRT form (")
        and provider in trt["format"]
        or trt["format"] == "ONNX int8 TensorRT form (CPU)"
    )
    assert all_rows(result)[0]["format"] == "ONNX fp32 (CPU)" or not CPU_ONLY
    alone = CliRunner().invoke(
        main,
        [
            "bench",
            str(trt_form_bundle / "model.int8.trt.onnx"),
            "--batch-sizes",
            "1",
            "--iterations",
            "2",
            "--warmup",
            "0",
        ],
    )
    assert alone.exit_code == 0, alone.output
    if CPU_ONLY:  # one file named on its own is timed, with a word on what it is
        assert "model.int8.trt.onnx is the TensorRT form" in alone.stderr


def test_bench_all_eval_lists_every_artifact_with_its_numbers(bundle, tmp_path):
    out = tmp_path / "all.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            str(bundle),
            "--all",
            "--eval",
            "--batch-sizes",
            "1,4",
            "--iterations",
            "5",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:4] == ["artifact", "format", "backend", "size"]
    for label in ("p50", "p99", "images/s", "top-1", "agree"):
        assert label in header
    rows = [line.split() for line in lines[2:6]]  # artifact, format (3 words), backend, size, batch
    assert [(r[0], r[6]) for r in rows] == [
        ("model.onnx", "1"),
        ("model.onnx", "4"),
        ("model.fp16.onnx", "1"),
        ("model.fp16.onnx", "4"),
    ]
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
    assert (
        saved["reference"]["vs_student_at_build"]
        == card["models"]["onnx"]["vs_student"]["prediction_agreement"]
    )

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
    result = CliRunner().invoke(
        main, ["bench", str(bundle), "--all", "--iterations", "3", "--warmup", "0", "--update-card"]
    )
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
        ("model.onnx", "onnxruntime"),
        ("model.fp16.onnx", "onnxruntime"),
        ("model.fp16.engine", "tensorrt"),
    ]
    assert artifacts[2]["skipped"].startswith("a TensorRT engine, but TensorRT's Python bindings")
    result = run_bench_all(bundle, iterations=2, warmup=0)
    assert [r["artifact"]["file"] for r in result["results"]] == ["model.onnx", "model.fp16.onnx"]
    assert result["skipped"][0]["file"] == "model.fp16.engine"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "onnxruntime"], "--all with --backend onnxruntime"),
        (["--tegrastats"], "--all with --tegrastats"),
        (["--repeats", "0"], "--repeats: 0; must be a positive integer"),
    ],
)
def test_bench_all_mistakes_are_one_line(bundle, args, message):
    result = CliRunner().invoke(main, ["bench", str(bundle), "--all", *args])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_all_needs_a_bundle_directory(bundle):
    with pytest.raises(EdgeKDError, match="--all: .*model.onnx is not a bundle directory"):
        run_bench_all(bundle / "model.onnx")


def test_include_trt_form_needs_all(bundle):
    result = CliRunner().invoke(main, ["bench", str(bundle), "--include-trt-form"])
    assert result.exit_code == 2 and "--include-trt-form: only with --all" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
