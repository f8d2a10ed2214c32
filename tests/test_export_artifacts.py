"""INT8 and FP16 ONNX artifacts evaluated as shipped, TensorRT's clean skip, safe tarballs."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgekd.bundle.extract import extract_bundle
from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export.int8 import quantize_int8
from edgekd.export.tensorrt import tensorrt_status

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def artifact_build(tmp_path_factory, tiny_recipe):
    from edgekd.pipeline import build

    out = tmp_path_factory.mktemp("artifacts")
    return build(
        tiny_recipe,
        out=out,
        log=lambda m: None,
        overrides=(
            "export.int8.enabled=true",
            "export.int8.calibration_samples=64",
            "export.int8.qat=on",
            "export.int8.qat_steps=6",
            "export.fp16.enabled=true",
            "export.tensorrt.enabled=true",
        ),
    )


def test_int8_graph_is_qdq_with_per_channel_weights(artifact_build):
    model = onnx.load(str(artifact_build.bundle_dir / "model.int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    scales = {i.name: i for i in model.graph.initializer}
    per_channel = [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[1] in scales
        and len(scales[n.input[1]].dims) == 1
        and scales[n.input[1]].dims[0] > 1
    ]
    assert per_channel, "weights carry one scale per output channel"
    assert _input_zero_point_type(model) == onnx.TensorProto.UINT8  # U8S8, onnxruntime's fast CPU path


def _input_zero_point_type(model) -> int:
    """The element type of the zero point that quantizes the graph's input."""
    inits = {i.name: i for i in model.graph.initializer}
    first = next(
        n
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] == model.graph.input[0].name
    )
    return inits[first.input[2]].data_type


def test_int8_with_signed_activations_for_tensorrt(artifact_build, tmp_path):
    from edgekd.data import load_data
    from edgekd.recipe import load_recipe

    data = load_data(load_recipe(TESTS / "tiny.yaml").data, seed=0)
    out = quantize_int8(
        artifact_build.bundle_dir / "model.onnx",
        tmp_path / "s8.onnx",
        data.train.images[:32],
        data.mean,
        data.std,
        activations="int8",
    )
    assert _input_zero_point_type(onnx.load(str(out))) == onnx.TensorProto.INT8
    with pytest.raises(EdgeKDError, match="export.int8.activations: unknown type 'int4'"):
        quantize_int8(
            out, tmp_path / "x.onnx", data.train.images[:4], data.mean, data.std, activations="int4"
        )


def test_tensorrt_form_is_symmetric_int8_and_ships_its_calibration_cache(artifact_build):
    from onnx import numpy_helper

    from edgekd.export.calibration_cache import read_tensorrt_cache

    bundle = artifact_build.bundle_dir
    model = onnx.load(str(bundle / "model.int8.trt.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [
        numpy_helper.to_array(inits[n.input[2]])
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
    ]
    assert len(zero_points) > 20
    assert all((z == 0).all() for z in zero_points)  # symmetric everywhere
    assert {str(z.dtype) for z in zero_points} == {"int8"}  # biases float: no int32 DQ
    assert _input_zero_point_type(model) == onnx.TensorProto.INT8
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = artifact_build.card["models"]["onnx_int8_trt"]
    assert entry["export"]["symmetric"] and entry["export"]["quantized_biases"] is False
    assert "model.int8.trt.onnx" in manifest["files"]
    if entry["export"]["fine_tuned"]:  # the fine-tuned file's scales do not fit model.onnx
        assert "calibration.cache" not in manifest["files"]
        assert entry["export"]["calibration_cache"]["file"] is None
        assert "INT8-aware fine-tuned" in entry["export"]["calibration_cache"]["left_out"]
    else:
        header, scales = read_tensorrt_cache(bundle / "calibration.cache")
        assert header == "TRT-100300-EntropyCalibration2" and "calibration.cache" in manifest["files"]
        assert "images" in scales and all(s > 0 for s in scales.values())
        assert entry["export"]["calibration_cache"]["file"] == "calibration.cache"
        assert entry["extra_files"] == {"calibration.cache": "calibration.cache"}
    assert entry["export"]["tries"][0]["kept_in_float"] == []
    md = (bundle / "card.md").read_text()
    agreement = entry["export"]["agreement_with_fp32_on_validation"]
    assert (
        f"onnx_int8_trt: agreement with fp32 on the validation images (each (class, group) cell "
        f"weighted as in a balanced split) {agreement:.4f} (bound 0.97)"
    ) in md
    assert entry["export"]["calibration_draw"] == "cell_balanced"


def test_int8_agreement_is_weighted_per_cell_as_a_balanced_split(artifact_build):
    """The card's agreement is that of the shipped file on the validation split, each image
    weighted by its cell's P(c) P(g) / P(c, g): recomputed here from the files themselves."""
    from edgekd.data import load_data
    from edgekd.data.splits import cell_weights
    from edgekd.export.runtime import OnnxClassifier
    from edgekd.recipe import load_recipe

    data = load_data(load_recipe(TESTS / "tiny.yaml").data, seed=0)
    bundle = artifact_build.bundle_dir
    fp32 = OnnxClassifier(bundle / "model.onnx").predict_images(data.val.images, data.mean, data.std)
    for name, file in (("onnx_int8", "model.int8.onnx"), ("onnx_int8_trt", "model.int8.trt.onnx")):
        int8 = OnnxClassifier(bundle / file).predict_images(data.val.images, data.mean, data.std)
        same = int8.argmax(1) == fp32.argmax(1)
        expected = np.average(same, weights=cell_weights(data.val.labels, data.val.groups))
        recorded = artifact_build.card["models"][name]["export"]["agreement_with_fp32_on_validation"]
        assert recorded == pytest.approx(expected, abs=1e-9)


def test_tensorrt_cache_hand_worked(tmp_path):
    from edgekd.export.calibration_cache import read_tensorrt_cache, write_tensorrt_cache

    # scale 0.02 (amax 2.54) = 0x3ca3d70a as a big-endian float32; 1.0 (amax 127) = 0x3f800000
    path = write_tensorrt_cache(
        {"images": 2.54 / 127, "logits": 1.0}, tmp_path / "c.cache", tensorrt_version="8.6.1"
    )
    assert path.read_text() == "TRT-8601-EntropyCalibration2\nimages: 3ca3d70a\nlogits: 3f800000\n"
    header, scales = read_tensorrt_cache(path)
    assert scales["images"] == pytest.approx(0.02) and scales["logits"] == 1.0
    (tmp_path / "bad.cache").write_text("not a cache\n")
    with pytest.raises(EdgeKDError, match="not a TensorRT calibration cache"):
        read_tensorrt_cache(tmp_path / "bad.cache")


def test_sensitive_groups_are_found_from_the_graph(artifact_build):
    from edgekd.export.int8 import sensitive_groups

    groups = dict(sensitive_groups(artifact_build.bundle_dir / "model.onnx"))
    assert list(groups) == [
        "first and last layers",
        "squeeze-and-excitation blocks",
        "element-wise ops (SiLU, residual adds)",
        "depthwise convolutions",
    ]
    assert groups["first and last layers"][0] == "/conv_stem/Conv"
    assert groups["first and last layers"][-1] == "/classifier/Gemm"
    assert all("/se/" in name for name in groups["squeeze-and-excitation blocks"])
    assert any(name.endswith("/se/conv_reduce/Conv") for name in groups["squeeze-and-excitation blocks"])
    assert all("conv_dw" in name for name in groups["depthwise convolutions"])


def test_agreement_search_keeps_groups_in_float_until_the_bound(artifact_build, tmp_path):
    from edgekd.data import load_data
    from edgekd.export.int8 import FORMS, quantize_to_agreement, sensitive_groups
    from edgekd.recipe import load_recipe

    data = load_data(load_recipe(TESTS / "tiny.yaml").data, seed=0)
    onnx_path = artifact_build.bundle_dir / "model.onnx"
    result = quantize_to_agreement(
        onnx_path,
        tmp_path / "q.onnx",
        data.train.images[:32],
        data.val.images,
        data.mean,
        data.std,
        form=FORMS["cpu"],
        min_agreement=1.01,
    )
    groups = sensitive_groups(onnx_path)
    # the bound out of reach: every group is tried, whether or not the one before gained
    assert not result.reached and len(result.tries) == 1 + len(groups)
    labels = [label for label, _ in groups]
    for n, attempt in enumerate(result.tries):  # one more group kept in float per try
        assert attempt["kept_in_float"] == labels[:n]
    agreements = [t["agreement"] for t in result.tries]
    chosen = result.shipped  # the bound out of reach: the best try seen ships (the earliest of equals)
    assert chosen == agreements.index(max(agreements))
    assert result.tries[chosen]["kept_in_float"] == result.kept_in_float
    assert result.agreement == agreements[chosen]
    assert result.path.is_file()


def test_fp16_graph_keeps_fp32_io(artifact_build):
    model = onnx.load(str(artifact_build.bundle_dir / "model.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_every_artifact_is_on_the_card_with_its_drift(artifact_build):
    card = artifact_build.card
    for name, file in (("onnx_int8", "model.int8.onnx"), ("onnx_fp16", "model.fp16.onnx")):
        entry = card["models"][name]
        assert entry["file"] == file and entry["size_bytes"] > 0
        assert 0.0 <= entry["vs_student"]["prediction_agreement"] <= 1.0
        assert entry["metrics"]["top1"] is not None and "ci" in entry
    # FP16 on onnxruntime CPU tracks fp32 closely; INT8 on a 2-epoch tiny model may drift more
    assert card["models"]["onnx_fp16"]["vs_student"]["prediction_agreement"] >= 0.95
    sizes = {n: card["models"][n]["size_bytes"] for n in ("onnx", "onnx_int8", "onnx_fp16")}
    assert sizes["onnx_fp16"] < sizes["onnx"]
    if tensorrt_status() is not None:  # this machine: the engine is skipped in one line
        assert card["skipped_artifacts"][0]["name"] == "tensorrt_fp16"
        assert (
            "no engine built" in card["skipped_artifacts"][0]["skipped"]
            or "GPU" in card["skipped_artifacts"][0]["skipped"]
        )


def test_required_tensorrt_without_it_fails_in_one_line(tiny_recipe, tmp_path):
    if tensorrt_status() is None:
        pytest.skip("TensorRT and a GPU are present here")
    result = CliRunner().invoke(
        main,
        [
            "build",
            str(tiny_recipe),
            "--out",
            str(tmp_path),
            "--set",
            "export.tensorrt.enabled=true",
            "--set",
            "export.tensorrt.required=true",
        ],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "export.tensorrt (required):" in lines[0]
    assert not (tmp_path / "tiny" / "bundle").exists()


def test_torch_tensorrt_missing_is_one_line(tiny_recipe, tmp_path):
    try:
        import torch_tensorrt  # noqa: F401

        pytest.skip("Torch-TensorRT is installed here")
    except ImportError:
        pass
    result = CliRunner().invoke(
        main,
        [
            "build",
            str(tiny_recipe),
            "--out",
            str(tmp_path),
            "--set",
            "export.tensorrt.enabled=true",
            "--set",
            "export.tensorrt.via=torch_tensorrt",
        ],
    )
    assert result.exit_code == 2
    assert 'pip install "edgekd[tensorrt]"' in result.output


def test_tensorrt_engine_builds_and_runs_where_available(artifact_build):
    pytest.importorskip("tensorrt")
    if tensorrt_status() is not None:
        pytest.skip(tensorrt_status())
    from edgekd.export.tensorrt import TensorRTClassifier

    engine = artifact_build.bundle_dir / "model.fp16.engine"
    logits = TensorRTClassifier(engine).logits(np.zeros((2, 3, 32, 32), np.float32))
    assert logits.shape == (2, 4)


def test_bad_int8_method_and_batch_order_are_named():
    from edgekd.recipe import parse_recipe

    with pytest.raises(EdgeKDError, match="export.int8.method = 'kl'"):
        parse_recipe({"name": "x", "export": {"int8": {"method": "kl"}}})
    with pytest.raises(EdgeKDError, match="min_batch <= opt_batch <= max_batch"):
        parse_recipe({"name": "x", "export": {"tensorrt": {"opt_batch": 64, "max_batch": 8}}})
    with pytest.raises(EdgeKDError, match="unknown method 'kl'; choose one of: minmax, entropy"):
        quantize_int8("x.onnx", "y.onnx", np.zeros((1, 8, 8, 3), np.uint8), (0, 0, 0), (1, 1, 1), method="kl")


def test_tensorrt_profile_flags_and_cache_header_without_tensorrt():
    """The pure logic of the engine builder, checked where TensorRT is absent."""
    from edgekd.export.tensorrt import for_tensorrt_version, precision_flags, profile_shapes
    from edgekd.recipe import parse_recipe

    trt = {"enabled": True, "precision": "int8", "min_batch": 2, "opt_batch": 4, "max_batch": 16}
    export = {"tensorrt": trt, "int8": {"enabled": True}}
    trt_cfg = parse_recipe({"name": "x", "export": export}).export.tensorrt
    assert profile_shapes(48, trt_cfg.min_batch, trt_cfg.opt_batch, trt_cfg.max_batch) == (
        (2, 3, 48, 48),
        (4, 3, 48, 48),
        (16, 3, 48, 48),
    )
    assert precision_flags(trt_cfg.precision) == ["FP16", "INT8"]
    assert precision_flags("fp16") == ["FP16"] and precision_flags("fp32") == []
    with pytest.raises(EdgeKDError, match="unknown precision 'int4'"):
        precision_flags("int4")
    with pytest.raises(EdgeKDError, match="min_batch <= opt_batch"):
        profile_shapes(48, 4, 2, 8)

    # an INT8 engine is built from the TensorRT-form INT8 file (explicit quantization)
    with pytest.raises(EdgeKDError, match="tensorrt.precision: int8 builds the engine from model.int8.trt"):
        parse_recipe({"name": "x", "export": {"tensorrt": trt}})
    with pytest.raises(EdgeKDError, match="set int8.enabled: true with tensorrt in int8.forms"):
        parse_recipe({"name": "x", "export": {"tensorrt": trt, "int8": {"enabled": True, "forms": ["cpu"]}}})
    cache = b"TRT-100300-EntropyCalibration2\nimages: 3ca3d70a\n"
    assert for_tensorrt_version(cache, "8.6.1") == b"TRT-8601-EntropyCalibration2\nimages: 3ca3d70a\n"
    assert for_tensorrt_version(cache, "10.7.0").startswith(b"TRT-100700-EntropyCalibration2\n")


# ------------------------------------------------------------------------------- tarballs
def _tar(tmp_path, members: list[tuple[str, str | None, str | None]]):
    """(name, file content or None, symlink target or None)"""
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, content, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                data = (content or "").encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "members, needle",
    [
        ([("b-0.1/../../evil", "x", None)], "outside"),
        ([("/etc/evil", "x", None)], "outside"),
        ([("b-0.1/link", None, "../../etc/passwd")], "points outside"),
        ([("b-0.1/abs", None, "/etc/passwd")], "points outside"),
    ],
)
def test_extraction_refuses_members_outside_the_target(tmp_path, members, needle):
    archive = _tar(tmp_path, members)
    target = tmp_path / "out"
    with pytest.raises(EdgeKDError, match=needle):
        extract_bundle(archive, target)
    assert not (tmp_path / "evil").exists() and not target.exists()


def test_verify_a_tarball_and_a_tampered_one(artifact_build, tmp_path):
    tarball = artifact_build.run_dir / "tiny-0.1.0.tar.gz"
    ok = CliRunner().invoke(main, ["verify", str(tarball)])
    assert ok.exit_code == 0, ok.output
    # rebuild the archive with card.json changed (same size: a different size is refused before
    # extraction, see tests/test_security.py) and an extra file
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(tarball) as src, tarfile.open(bad, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith("card.json"):
                data = data.replace(b'"name": "tiny"', b'"name": "tinx"')
            dst.addfile(member, io.BytesIO(data))
        extra = tarfile.TarInfo("tiny-0.1.0/notes.txt")
        extra.size = 2
        dst.addfile(extra, io.BytesIO(b"hi"))
    result = CliRunner().invoke(main, ["verify", str(bad)])
    assert result.exit_code == 1
    assert "card.json" in result.output and "extra file: notes.txt" in result.output


def test_int8_aware_fine_tuning_is_tried_and_recorded(artifact_build):
    """With ``qat: on`` each form's all-INT8 try of the student as it is comes first, then the
    fine-tuned copy's tries (measured against the original student's file); the card says which
    shipped and why, and card.md says so when the fine-tuned one did."""
    from edgekd.export.int8 import shipped_try

    for name in ("onnx_int8", "onnx_int8_trt"):
        export = artifact_build.card["models"][name]["export"]
        tries = export["tries"]
        assert export["qat"] == "on" and tries[0]["kept_in_float"] == [] and "note" not in tries[0]
        tuned = [t for t in tries if t.get("note") == "after INT8-aware fine-tuning"]
        assert tuned and tuned[0]["kept_in_float"] == []
        shipped = export["shipped"]["try"]
        assert shipped == shipped_try(tries, export["min_agreement"])
        assert export["fine_tuned"] == ("note" in tries[shipped])
        assert export["agreement_with_fp32_on_validation"] == tries[shipped]["agreement"]
        assert (
            export["fine_tuning_decision"]["ran"]
            and export["fine_tuning_decision"]["by"] == "export.int8.qat: on"
        )
        if export["fine_tuned"]:
            assert export["fine_tuning"] == {"steps": 6, "lr": 5e-4}
            assert (
                "after INT8-aware fine-tuning of a copy of the student (6 steps"
                in (artifact_build.bundle_dir / "card.md").read_text()
            )
