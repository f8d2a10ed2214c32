"""Deployment targets, TensorRT-legal INT8, the TensorRT rules check, TensorRT's own parser
(TensorRT-RTX) on real bundles, and the engine builder on every TensorRT API line.

TensorRT-RTX (``pip install "edgekd[trt-check]"``) parses and builds here without a GPU; where it
is missing its tests skip, unless ``EDGEKD_REQUIRE_TRT_CHECK=1`` (set by ``.ci/run``) makes a
missing parser a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgekd.bench.engine import check_bundle_for_tensorrt, choose_source, plan_engine, target_mismatch
from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export.calibration_cache import read_tensorrt_cache
from edgekd.export.int8 import qdq_activation_scales
from edgekd.export.targets import (
    TARGETS,
    get_target,
    resolve_onnx_export,
    tensorrt_line,
)
from edgekd.export.tensorrt import build_engine, engine_source, tensorrt_api
from edgekd.export.tensorrt_check import check_for_tensorrt, proxy_module, tensorrt_gates
from edgekd.export.tensorrt_rules import RULES_LINES, check_file, check_model, operator_table

TESTS = Path(__file__).parent


def _rtx():
    module = proxy_module()
    if module is None:
        if os.environ.get("EDGEKD_REQUIRE_TRT_CHECK") == "1":
            pytest.fail("TensorRT-RTX (edgekd[trt-check]) is required here but does not import")
        pytest.skip("TensorRT-RTX is not installed (pip install 'edgekd[trt-check]')")
    return module


# ------------------------------------------------------------------------------ targets
def test_every_target_names_a_rules_line_whose_parser_reads_its_opset():
    assert {
        "orin-jetpack5.1",
        "orin-jetpack6.0",
        "orin-jetpack6.1",
        "xavier-jetpack5.1",
        "x86-tensorrt10",
        "x86-tensorrt11",
    } <= set(TARGETS)
    for target in TARGETS.values():
        assert target.rules in RULES_LINES
        assert target.max_opset <= operator_table(target.rules)["max_opset"]
        assert tensorrt_line(target.tensorrt.replace("x", "0")) == target.rules
    assert get_target("orin-jetpack6.0").max_opset == 17 and get_target("orin-jetpack6.0").tensorrt == "8.6.2"
    assert not get_target("x86-tensorrt11").int8_calibrator and get_target("x86-tensorrt11").strongly_typed
    with pytest.raises(EdgeKDError, match="unknown target 'nano'; choose one of: orin-jetpack5.1, "):
        get_target("nano")


@pytest.mark.parametrize(
    "version, line",
    [("8.5.2", "8.5"), ("8.6.1.6", "8.6"), ("10.3.0", "10"), ("10.14.1", "10"), ("11.0", "11")],
)
def test_tensorrt_versions_map_to_their_rules_line(version, line):
    assert tensorrt_line(version) == line


def test_tensorrt_before_8_5_is_refused_in_one_line():
    with pytest.raises(EdgeKDError, match="TensorRT 8.2.1: edgekd's engines need TensorRT 8.5 or newer"):
        tensorrt_line("8.2.1")


@pytest.mark.parametrize(
    "target, opset, exporter, expected",
    [
        ("orin-jetpack6.1", None, None, (18, "dynamo")),
        ("orin-jetpack6.0", None, None, (17, "torchscript")),
        ("orin-jetpack5.1", None, None, (17, "torchscript")),
        ("x86-tensorrt10", None, "torchscript", (17, "torchscript")),
        ("x86-tensorrt10", 20, None, (20, "dynamo")),
        ("orin-jetpack6.0", 16, None, (16, "torchscript")),
    ],
)
def test_the_target_fixes_the_opset_and_exporter(target, opset, exporter, expected):
    assert resolve_onnx_export(get_target(target), opset=opset, exporter=exporter) == expected


def test_an_opset_or_exporter_the_target_cannot_parse_is_one_line():
    from edgekd.recipe import parse_recipe

    with pytest.raises(
        EdgeKDError,
        match="export.onnx.opset = 18: the target orin-jetpack6.0 "
        r"\(TensorRT 8.6.2\) parses opset 17 at most",
    ):
        parse_recipe({"name": "x", "export": {"target": "orin-jetpack6.0", "onnx": {"opset": 18}}})
    with pytest.raises(
        EdgeKDError, match="'dynamo' writes opset 18 or newer, and the target xavier-jetpack5.1"
    ):
        parse_recipe({"name": "x", "export": {"target": "xavier-jetpack5.1", "onnx": {"exporter": "dynamo"}}})
    recipe = parse_recipe({"name": "x", "export": {"target": "orin-jetpack6.0"}})
    assert (recipe.export.onnx.opset, recipe.export.onnx.exporter) == (17, "torchscript")
    assert "target: orin-jetpack6.0" in recipe.to_yaml() and "opset: 17" in recipe.to_yaml()


def test_for_tensorrt_8_6_model_onnx_is_opset_17_with_reduce_mean_axes_as_attributes(tmp_path):
    """The squeeze-and-excitation means of an EfficientNet exported for JetPack 6.0: opset 17, and
    each ReduceMean's axes an attribute (TensorRT 8.6 ignores an axes input)."""
    import timm

    from edgekd.export.onnx import export_onnx
    from edgekd.recipe import parse_recipe

    cfg = parse_recipe({"name": "x", "export": {"target": "orin-jetpack6.0"}}).export.onnx
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=4)
    path = export_onnx(model, tmp_path / "model.onnx", image_size=32, opset=cfg.opset, exporter=cfg.exporter)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 17
    means = [n for n in graph.graph.node if n.op_type == "ReduceMean"]
    assert means and all(
        len(n.input) == 1 and [a.name for a in n.attribute if a.name == "axes"] for n in means
    )
    assert check_file(path, "8.6") == []


# ------------------------------------------------------------------------- rules, by hand
def _graph(nodes, initializers, *, opset=17, inputs=None, outputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def test_an_int32_bias_dequantize_is_named_with_its_rule():
    model = _graph(
        [
            helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], name="conv.bias_DQ"),
            helper.make_node("Add", ["x", "b"], ["y"], name="add"),
        ],
        [
            _const("b_q", np.array([1, 2, 3, 4], np.int32)),
            _const("b_s", np.float32(0.1)),
            _const("b_z", np.int32(0)),
        ],
    )
    for line in RULES_LINES:
        problems = check_model(model, line)
        assert [(p.node, p.op, p.rule) for p in problems] == [
            ("conv.bias_DQ", "DequantizeLinear", "dequantize-input")
        ]
        assert "reads int32" in problems[0].detail


def test_zero_points_per_axis_activations_and_foreign_operators_are_caught():
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_asym"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_asym"),
        helper.make_node("QuantizeLinear", ["xd", "s4", "z4"], ["xq2"], name="q_per_axis", axis=1),
        helper.make_node("DequantizeLinear", ["xq2", "s4", "z4"], ["xd2"], name="dq_per_axis", axis=1),
        helper.make_node("FusedConv", ["xd2"], ["y"], name="contrib", domain="com.microsoft"),
    ]
    model = _graph(
        nodes,
        [
            _const("s", np.float32(0.1)),
            _const("z", np.int8(3)),
            _const("s4", np.full(4, 0.1, np.float32)),
            _const("z4", np.zeros(4, np.int8)),
        ],
    )
    found = {(p.node, p.rule) for p in check_model(model, "10")}
    assert found == {
        ("q_asym", "zero-point"),
        ("dq_asym", "zero-point"),
        ("q_per_axis", "per-axis"),
        ("dq_per_axis", "per-axis"),
        ("contrib", "operator"),
    }


def test_reduce_mean_axes_as_an_input_breaks_8_x_and_needs_a_constant_on_10():
    mean = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="se.mean", keepdims=1)
    constant = _graph([mean], [_const("axes", np.array([2, 3], np.int64))], opset=18)
    problems = check_model(constant, "8.6")
    assert {(p.node, p.rule) for p in problems} == {("model", "opset"), ("se.mean", "reduce-axes")}
    assert "would reduce over every axis" in next(p.detail for p in problems if p.rule == "reduce-axes")
    assert check_model(constant, "10") == []
    computed = _graph([helper.make_node("Shape", ["x"], ["axes"], name="shape"), mean], [], opset=18)
    assert [(p.node, p.rule) for p in check_model(computed, "10")] == [("se.mean", "reduce-axes")]


def test_an_operator_outside_the_table_is_named():
    model = _graph([helper.make_node("Bernoulli", ["x"], ["y"], name="coin")], [])
    assert [(p.node, p.rule) for p in check_model(model, "8.6")] == [("coin", "operator")]


# --------------------------------------------------------------- real files and TensorRT-RTX
@pytest.fixture(scope="module")
def int8_build(tmp_path_factory, tiny_recipe):
    """The tiny recipe with both INT8 forms and FP16, INT8-aware fine-tuning off (so the
    calibration cache ships)."""
    from edgekd.pipeline import build

    return build(
        tiny_recipe,
        out=tmp_path_factory.mktemp("trt"),
        log=lambda m: None,
        overrides=(
            "export.int8.enabled=true",
            "export.int8.calibration_samples=64",
            "export.int8.qat=off",
            "export.fp16.enabled=true",
        ),
    )


def test_the_tensorrt_int8_form_has_float_biases_and_symmetric_int8_zero_points(int8_build):
    model = onnx.load(str(int8_build.bundle_dir / "model.int8.trt.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    dequantized = [
        inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
    ]
    assert dequantized and {t.data_type for t in dequantized} == {TensorProto.INT8}
    zero_points = [
        inits[n.input[2]]
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
    ]
    assert zero_points and {t.data_type for t in zero_points} == {TensorProto.INT8}
    assert not any(numpy_helper.to_array(z).any() for z in zero_points)
    biases = [n.input[2] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert biases and all(inits[b].data_type == TensorProto.FLOAT for b in biases)
    # the CPU form keeps onnxruntime's int32 biases: it is not meant for TensorRT
    cpu = onnx.load(str(int8_build.bundle_dir / "model.int8.onnx"))
    assert any(t.data_type == TensorProto.INT32 for t in cpu.graph.initializer)


def test_the_card_names_the_target_and_every_file_passes_its_rules(int8_build):
    deployment = int8_build.card["deployment"]
    assert deployment["target"]["name"] == "orin-jetpack6.1"
    assert deployment["onnx"] == {"opset": 17, "exporter": "torchscript"}
    assert set(deployment["rules"]) == {"model.onnx", "model.int8.trt.onnx", "model.fp16.onnx"}
    assert all(r["passed"] and r["count"] == 0 for r in deployment["rules"].values())
    gates = [g for g in int8_build.card["gates"] if g["name"] == "tensorrt_rules"]
    assert {g["artifact"] for g in gates} == {"onnx", "onnx_int8_trt", "onnx_fp16"}
    md = (int8_build.bundle_dir / "card.md").read_text()
    assert "## Deployment target" in md and "Made for **orin-jetpack6.1**" in md


def test_tensorrt_rtx_parses_and_builds_every_file_of_the_bundle(int8_build):
    rtx = _rtx()
    parser = int8_build.card["deployment"]["parser"]
    assert parser["name"] == f"TensorRT-RTX {rtx.__version__}" and parser["proxy_for"] == "orin-jetpack6.1"
    assert parser["note"].startswith(
        f"Parsed and built by TensorRT-RTX {rtx.__version__} (a proxy for orin-jetpack6.1"
    )
    assert {f: (r["parsed"], r["built"]) for f, r in parser["files"].items()} == {
        f: (True, True) for f in ("model.onnx", "model.int8.trt.onnx", "model.fp16.onnx")
    }
    assert all(r["engine_bytes"] > 10_000 for r in parser["files"].values())
    gates = {g["artifact"]: g for g in int8_build.card["gates"] if g["name"] == "tensorrt_parse"}
    assert set(gates) == {"onnx", "onnx_int8_trt", "onnx_fp16"} and all(g["passed"] for g in gates.values())
    assert "TensorRT-RTX" in (int8_build.bundle_dir / "card.md").read_text()


def test_the_calibration_cache_holds_the_shipped_files_scales(int8_build):
    bundle = int8_build.bundle_dir
    header, cache = read_tensorrt_cache(bundle / "calibration.cache")
    shipped = qdq_activation_scales(bundle / "model.int8.trt.onnx", bundle / "model.onnx")
    assert header.startswith("TRT-") and set(cache) == set(shipped) and "images" in cache
    assert all(np.isclose(cache[name], shipped[name], rtol=1e-6) for name in cache)
    names = {o for n in onnx.load(str(bundle / "model.onnx")).graph.node for o in n.output} | {"images"}
    assert set(cache) <= names
    export = int8_build.card["models"]["onnx_int8_trt"]["export"]
    assert export["calibration_cache"] == {
        "file": "calibration.cache",
        "tensors": len(cache),
        "scales_from": "model.int8.trt.onnx (the shipped Q/DQ file)",
    }


def test_an_int32_bias_file_fails_the_rules_and_tensorrts_parser_and_its_gate(int8_build, tmp_path):
    from edgekd.data import load_data
    from edgekd.export.int8 import quantize_int8
    from edgekd.recipe import load_recipe

    rtx = _rtx()
    recipe = load_recipe(TESTS / "tiny.yaml")
    data = load_data(recipe.data, seed=recipe.seed)
    bad = quantize_int8(
        int8_build.bundle_dir / "model.onnx",
        tmp_path / "model.int8.trt.onnx",
        data.train.images[:32],
        data.mean,
        data.std,
        activations="int8",
        symmetric=True,
    )
    problems = check_file(bad, "10")
    assert problems and problems[0].rule == "dequantize-input"
    assert problems[0].node.endswith("bias_DequantizeLinear")
    deployment = check_for_tensorrt(
        {"model.int8.trt.onnx": bad}, get_target("orin-jetpack6.1"), image_size=32, proxy=rtx
    )
    result = deployment["parser"]["files"]["model.int8.trt.onnx"]
    assert not result["parsed"] and not result["built"] and problems[0].node in result["error"]
    gates = tensorrt_gates(deployment, {"model.int8.trt.onnx": "onnx_int8_trt"})
    assert [(g["name"], g["passed"]) for g in gates] == [("tensorrt_rules", False), ("tensorrt_parse", False)]
    assert f"node {problems[0].node} (DequantizeLinear): dequantize-input" in gates[0]["detail"]


def test_a_build_whose_tensorrt_form_breaks_the_rules_fails_its_gate(tmp_path, tiny_recipe, monkeypatch):
    """The build refuses to ship an int32-bias file as the TensorRT form: its gates fail (exit 1)."""
    from dataclasses import replace

    from edgekd.export import int8
    from edgekd.pipeline import build

    monkeypatch.setitem(int8.FORMS, "tensorrt", replace(int8.FORMS["tensorrt"], quantize_bias=True))
    result = build(
        tiny_recipe,
        out=tmp_path,
        log=lambda m: None,
        overrides=(
            "export.int8.enabled=true",
            "export.int8.forms=[tensorrt]",
            "export.int8.calibration_samples=32",
            "export.int8.qat=off",
            "teacher.epochs=1",
            "student.epochs=1",
        ),
    )
    failed = {(g["name"], g["artifact"]) for g in result.failed_gates}
    assert ("tensorrt_rules", "onnx_int8_trt") in failed
    detail = next(g["detail"] for g in result.failed_gates if g["name"] == "tensorrt_rules")
    assert detail.startswith("model.int8.trt.onnx: node ") and "dequantize-input: reads int32" in detail
    if proxy_module() is not None:
        assert ("tensorrt_parse", "onnx_int8_trt") in failed
    runner = CliRunner()
    out = runner.invoke(main, ["card", str(result.bundle_dir), "--check"])
    assert out.exit_code == 1 and "gate failed: tensorrt_rules on onnx_int8_trt" in out.output


# ------------------------------------------------------------------------------ on the device
def test_engine_check_runs_the_rules_and_the_parser_on_a_bundle(int8_build, tmp_path):
    result = check_bundle_for_tensorrt(int8_build.bundle_dir, target="orin-jetpack6.0")
    assert result["deployment"]["target"]["name"] == "orin-jetpack6.0"
    assert all(g["passed"] for g in result["gates"])
    out = CliRunner().invoke(main, ["engine", str(int8_build.bundle_dir), "--check"])
    assert out.exit_code == 0 and "every file passes for orin-jetpack6.1" in out.output
    out = CliRunner().invoke(main, ["engine", str(int8_build.bundle_dir), "--target", "x86-tensorrt10"])
    assert out.exit_code == 2 and "--target: only with --check" in out.output


def test_engine_says_in_one_line_when_the_device_runs_another_tensorrt():
    target = get_target("orin-jetpack6.1").record()
    assert target_mismatch(target, "10.3.0.30") is None
    line = target_mismatch(target, "8.6.2.3")
    assert line.startswith(
        "engine: this device has TensorRT 8.6.2.3, the bundle was made for "
        "orin-jetpack6.1 (TensorRT 10.3, ONNX opset <= 20)"
    )
    assert "--set export.target=orin-jetpack6.0" in line and "\n" not in line
    assert target_mismatch(None, "8.6.2") is None


@pytest.mark.parametrize(
    "strongly_typed, precision, expected",
    [
        (False, "fp16", ("model.onnx", None, None)),
        (True, "fp16", ("model.fp16.onnx", None, None)),
        (False, "int8", ("model.int8.trt.onnx", "Q/DQ nodes of model.int8.trt.onnx", None)),
        (True, "int8", ("model.int8.trt.onnx", "Q/DQ nodes of model.int8.trt.onnx", None)),
        (True, "fp32", ("model.onnx", None, None)),
    ],
)
def test_the_engine_source_follows_the_tensorrt_line(strongly_typed, precision, expected):
    files = {"model.onnx": Path("a"), "model.fp16.onnx": Path("b"), "model.int8.trt.onnx": Path("c")}
    assert engine_source(precision, files, strongly_typed=strongly_typed) == expected


def test_tensorrt_11_without_the_typed_files_is_one_line(tmp_path):
    files = {"model.onnx": Path("a"), "calibration.cache": Path("c")}
    assert engine_source("int8", files, strongly_typed=False) == (
        "model.onnx",
        "calibration cache calibration.cache",
        "calibration.cache",
    )
    with pytest.raises(
        EdgeKDError, match="takes INT8 only from Q/DQ nodes, and there is no model.int8.trt.onnx"
    ):
        engine_source("int8", files, strongly_typed=True)
    with pytest.raises(EdgeKDError, match="fp16 from an fp16-typed file, and there is no model.fp16.onnx"):
        engine_source("fp16", files, strongly_typed=True)


def test_the_device_plan_of_a_strongly_typed_tensorrt_sets_no_precision_flags(int8_build, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(int8_build.bundle_dir, bundle)
    plan = plan_engine(bundle, precision="fp16", strongly_typed=True, calibrator=False)
    assert (plan.onnx, plan.flags) == ("model.fp16.onnx", ())
    assert plan_engine(bundle, precision="fp16").flags == ("FP16",)
    (bundle / "model.int8.trt.onnx").unlink()
    assert choose_source(bundle, "int8")[0] == "model.onnx"  # 8.x/10.x: the calibration cache
    with pytest.raises(EdgeKDError, match="--precision int8: this TensorRT takes INT8 only"):
        choose_source(bundle, "int8", strongly_typed=True)


# -------------------------------------------------------------- every TensorRT API line
class _Recorder:
    def __init__(self):
        self.calls = []


def _fake_tensorrt(version: str, recorder: _Recorder, *, removed_flags: bool = False):
    """A stand-in ``tensorrt`` module of ``version`` that records what the builder is asked; 11.x
    has no FP16/INT8 flags and no calibrator (as documented), so using them raises."""
    import types

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Flags:
        EXPLICIT_BATCH, STRONGLY_TYPED = 0, 1 if not version.startswith("8") else 2

    trt.NetworkDefinitionCreationFlag = Flags
    flag_names = ["GPU_FALLBACK"] + ([] if removed_flags else ["FP16", "INT8"])
    trt.BuilderFlag = types.SimpleNamespace(**{n: n for n in flag_names})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DeviceType = types.SimpleNamespace(DLA="DLA")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    if not removed_flags:

        class EntropyCalibrator2:
            def __init__(self):
                recorder.calls.append(("calibrator", type(self).__mro__[1].__name__))

        trt.IInt8EntropyCalibrator2 = EntropyCalibrator2

    class Network:
        def get_input(self, i):
            return types.SimpleNamespace(name="images")

    class Config:
        def set_memory_pool_limit(self, pool, size):
            recorder.calls.append(("workspace", size))

        def add_optimization_profile(self, profile):
            pass

        def set_flag(self, flag):
            recorder.calls.append(("flag", flag))

        def set_calibration_profile(self, profile):
            pass

        def __setattr__(self, name, value):
            recorder.calls.append(("config", name))
            object.__setattr__(self, name, value)

    class Builder:
        num_DLA_cores = 2

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            recorder.calls.append(("network_flags", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda *a: None)

        def build_serialized_network(self, network, config):
            return b"engine"

    class OnnxParser:
        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            recorder.calls.append(("parse", Path(path).name))
            return True

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


@pytest.mark.parametrize(
    "version, flags, fp16_flags",
    [("8.6.1", 1 << 0, ["FP16"]), ("10.3.0", 0, ["FP16"]), ("11.1.0", 1 << 1, [])],
)
def test_the_builder_speaks_each_tensorrt_line(tmp_path, version, flags, fp16_flags):
    recorder = _Recorder()
    trt = _fake_tensorrt(version, recorder, removed_flags=version.startswith("11"))
    api = tensorrt_api(trt)
    files = {"model.onnx": Path("a"), "model.fp16.onnx": Path("b")}
    source = engine_source("fp16", files, strongly_typed=api.strongly_typed)[0]
    build_engine(Path(source), tmp_path / "e.engine", precision="fp16", image_size=32, trt=trt)
    assert ("network_flags", flags) in recorder.calls
    assert [c[1] for c in recorder.calls if c[0] == "flag"] == fp16_flags
    assert ("parse", "model.fp16.onnx" if version.startswith("11") else "model.onnx") in recorder.calls
    assert (tmp_path / "e.engine").read_bytes() == b"engine"


def test_int8_from_a_calibration_cache_uses_the_calibrator_where_it_exists(tmp_path):
    cache = tmp_path / "calibration.cache"
    cache.write_text("TRT-100300-EntropyCalibration2\nimages: 3c010204\n")
    for version in ("8.6.1", "10.3.0"):
        recorder = _Recorder()
        trt = _fake_tensorrt(version, recorder)
        build_engine(
            Path("model.onnx"),
            tmp_path / "e.engine",
            precision="int8",
            image_size=32,
            calibration_cache=cache,
            trt=trt,
        )
        assert ("config", "int8_calibrator") in recorder.calls
        assert [c[1] for c in recorder.calls if c[0] == "flag"] == ["FP16", "INT8"]
    recorder = _Recorder()
    trt = _fake_tensorrt("11.0.0", recorder, removed_flags=True)
    with pytest.raises(
        EdgeKDError, match="TensorRT 11.0.0 has no INT8 calibrator: build int8 from the Q/DQ file"
    ):
        build_engine(
            Path("model.onnx"),
            tmp_path / "e.engine",
            precision="int8",
            image_size=32,
            calibration_cache=cache,
            trt=trt,
        )
    recorder = _Recorder()
    build_engine(
        Path("model.int8.trt.onnx"),
        tmp_path / "e.engine",
        precision="int8",
        image_size=32,
        explicit_int8=True,
        trt=_fake_tensorrt("11.0.0", recorder, removed_flags=True),
    )
    assert not [c for c in recorder.calls if c[0] == "flag"]


def test_tensorrt_rtx_builds_as_tensorrt_11_for_the_compute_capability_given(int8_build, tmp_path):
    rtx = _rtx()
    api = tensorrt_api(rtx)
    assert api.rtx and api.strongly_typed and not api.has_calibrator
    for file, precision in (
        ("model.onnx", "fp32"),
        ("model.fp16.onnx", "fp16"),
        ("model.int8.trt.onnx", "int8"),
    ):
        engine = build_engine(
            int8_build.bundle_dir / file,
            tmp_path / f"{file}.engine",
            precision=precision,
            image_size=32,
            max_batch=8,
            explicit_int8=precision == "int8",
            trt=rtx,
            compute_capability="SM86",
            quiet=True,
        )
        assert engine.stat().st_size > 10_000
    with pytest.raises(EdgeKDError, match="has no INT8 calibrator"):
        build_engine(
            int8_build.bundle_dir / "model.onnx",
            tmp_path / "x.engine",
            precision="int8",
            image_size=32,
            calibration_cache=int8_build.bundle_dir / "calibration.cache",
            trt=rtx,
            compute_capability="SM86",
            quiet=True,
        )


def test_the_docs_targets_table_is_the_codes():
    """The docs' table of deployment targets (rendered on every docs build) says what
    edgekd.export.targets holds, in its order."""
    sys.path.insert(0, str(TESTS.parent / "scripts"))
    from mkdocs_hooks import targets_table

    rows = [
        [c.strip().strip("`") for c in line.strip("|").split("|")]
        for line in targets_table().splitlines()[2:]
    ]
    assert [r[0] for r in rows] == list(TARGETS)
    for row in rows:
        t = TARGETS[row[0]]
        assert row[1:] == [
            t.description,
            t.tensorrt,
            t.rules,
            str(t.max_opset),
            ", ".join(t.compute_capability),
            str(t.dla_cores),
            "yes" if t.int8_calibrator else "no",
            "yes" if t.strongly_typed else "no",
        ]
