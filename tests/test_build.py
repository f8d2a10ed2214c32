"""A real end-to-end build of the tiny recipe: bundle, card, manifest, ONNX against torch."""

import json
import os
import tarfile

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner

from edgekd.bundle import manifest_problems
from edgekd.cli import main
from edgekd.export.runtime import OnnxClassifier

BUNDLE_FILES = {
    "card.html",
    "card.json",
    "card.md",
    "eval_set.npz",
    "plots",
    "manifest.json",
    "model.onnx",
    "predictions.npz",
    "preprocess.json",
    "recipe.yaml",
}


def test_bundle_holds_every_file_and_the_manifest_checks_out(tiny_build):
    bundle = tiny_build.bundle_dir
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES
    assert manifest_problems(bundle) == []
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = BUNDLE_FILES - {"plots"} | {
        "plots/disparity_by_class.png",
        "plots/recall_by_group.png",
        "plots/training_curves.png",
        "plots/compression_by_group.png",
    }
    assert set(manifest["files"]) == files - {"manifest.json"}
    assert {"torch", "timm", "onnxruntime", "fairlearn"} <= set(manifest["versions"])
    tar = tiny_build.run_dir / "tiny-0.1.0.tar.gz"
    with tarfile.open(tar) as t:
        assert sorted(t.getnames()) == sorted(f"tiny-0.1.0/{f}" for f in files)


def test_bundle_files_are_readable_by_others(tiny_build):
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for path in tiny_build.bundle_dir.rglob("*"):
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == 0o666 & ~umask, f"{path.name} has mode {oct(mode)}"


def test_card_has_every_model_and_metric(tiny_build):
    card = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    assert card["schema"] == "edgekd.card/v1"
    assert list(card["models"]) == ["teacher", "baseline", "student", "onnx"]
    for name, entry in card["models"].items():
        m = entry["metrics"]
        for key in (
            "top1",
            "macro_recall",
            "macro_precision",
            "macro_f1",
            "mean_abs_disparity",
            "max_abs_disparity",
        ):
            assert isinstance(m[key], float) and 0.0 <= m[key] <= 1.0, (name, key)
        for key in ("dpd", "eod"):
            assert set(m[key]) == {"mean", "worst", "worst_class"}
        assert len(m["per_class"]) == 4
        row = m["per_class"][0]
        assert set(row["recall_by_group"]) == {"warm", "cool"}
        by_group = row["recall_by_group"]
        assert row["disparity"] == pytest.approx(by_group["warm"] - by_group["cool"])
        assert entry["size_bytes"] > 0
    assert card["models"]["onnx"]["vs_student"]["prediction_agreement"] == 1.0
    assert set(card["comparisons"]) == {"teacher_to_student", "baseline_to_student"}
    assert card["provenance"]["recipe_sha256"]
    assert all(g["passed"] for g in card["gates"])


def test_card_keeps_every_epoch_and_draws_the_training_curves(tiny_build):
    """Each torch model's history on the card is its stage's history.json, epoch by epoch, and
    the training-curves plot is in the bundle, the manifest and card.md."""
    from PIL import Image

    card = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    stages = tiny_build.run_dir / "stages"
    for name in ("teacher", "baseline", "student"):
        training = card["models"][name]["training"]
        recorded = json.loads((stages / name / "history.json").read_text())
        assert [r["epoch"] for r in training["history"]] == list(range(1, training["epochs"] + 1))
        for mine, theirs in zip(training["history"], recorded):
            for key in ("train_loss", "val_top1", "val_mean_abs_disparity"):
                assert mine[key] == pytest.approx(theirs[key]), (name, key)
    plot = tiny_build.bundle_dir / "plots" / "training_curves.png"
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 600
    assert "![training curves](plots/training_curves.png)" in (tiny_build.bundle_dir / "card.md").read_text()


def test_onnx_matches_torch_on_the_test_images(tiny_build):
    from edgekd.data import load_data
    from edgekd.recipe import load_recipe

    check = tiny_build.card["models"]["onnx"]["export"]
    assert check["argmax_agreement"] == 1.0 and check["max_abs_diff"] < 1e-4
    recipe = load_recipe(tiny_build.bundle_dir / "recipe.yaml")
    data = load_data(recipe.data, seed=recipe.seed)
    pre = json.loads((tiny_build.bundle_dir / "preprocess.json").read_text())
    onnx_logits = OnnxClassifier(tiny_build.bundle_dir / "model.onnx").predict_images(
        data.test.images, pre["mean"], pre["std"]
    )
    torch_logits = np.load(tiny_build.run_dir / "stages/student/test_predictions.npz")["logits"]
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4
    for batch in (1, 7):  # the batch axis is dynamic
        assert OnnxClassifier(tiny_build.bundle_dir / "model.onnx").predict_images(
            data.test.images[:batch], pre["mean"], pre["std"]
        ).shape == (batch, 4)


def test_the_default_exporter_is_dynamo_and_matches_torch(tiny_build, tmp_path):
    import torch

    from edgekd.data import load_data
    from edgekd.export.onnx import compare_with_torch, export_onnx
    from edgekd.export.tensorrt_rules import check_file
    from edgekd.models import create_model
    from edgekd.recipe import load_recipe, parse_recipe

    cfg = parse_recipe({"name": "x"}).export.onnx  # the default target: JetPack 6.1 (TensorRT 10.3)
    assert (cfg.exporter, cfg.opset) == ("dynamo", 18)
    recipe = load_recipe(tiny_build.bundle_dir / "recipe.yaml")
    data = load_data(recipe.data, seed=recipe.seed)
    model = create_model(recipe.student, data.num_classes, key="student")
    weights = torch.load(tiny_build.run_dir / "stages/student/best.pt", weights_only=True)["model"]
    model.load_state_dict(weights)
    path = export_onnx(
        model, tmp_path / "model.onnx", image_size=data.image_size, opset=cfg.opset, exporter=cfg.exporter
    )
    check = compare_with_torch(model, path, data.test.images, data.mean, data.std)
    assert check["argmax_agreement"] == 1.0 and check["max_abs_diff"] < 1e-4
    assert onnx.load(str(path)).opset_import[0].version == 18
    # TensorRT 10 reads opset 18's ReduceMean axes (a constant input); 8.6 would ignore them
    assert check_file(path, "10") == []
    assert {p.rule for p in check_file(path, "8.6")} == {"opset", "reduce-axes"}


def test_card_md_front_matter_is_yaml_with_model_index(tiny_build):
    text = (tiny_build.bundle_dir / "card.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "onnx"
    [result] = front["model-index"][0]["results"]  # the shipped model.onnx only
    assert all("(model.onnx through onnxruntime" in m["name"] for m in result["metrics"])
    assert "| class | recall warm | recall cool |" in text
    assert "synthetic" in text


def test_build_summary_rows(tiny_build):
    assert [r["model"] for r in tiny_build.rows] == ["teacher", "baseline", "student", "onnx"]
    assert tiny_build.stage_status == {
        "teacher": "trained",
        "baseline": "trained",
        "student": "trained",
        "export": "trained",
        "tensorrt_check": "trained",
    }


def test_verify_names_a_flipped_byte_a_missing_and_an_extra_file(tiny_build, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_build.bundle_dir, bundle)
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    (bundle / "card.md").unlink()
    (bundle / "notes.txt").write_text("hi")
    result = CliRunner().invoke(main, ["verify", str(bundle)])
    assert result.exit_code == 1
    assert "checksum mismatch: model.onnx" in result.output
    assert "missing: card.md" in result.output
    assert "extra file: notes.txt" in result.output


def test_card_command_renders_and_checks(tiny_build):
    runner = CliRunner()
    result = runner.invoke(main, ["card", str(tiny_build.bundle_dir), "--check"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["card", str(tiny_build.bundle_dir), "--format", "json"])
    assert json.loads(result.output)["schema"] == "edgekd.card/v1"
    result = runner.invoke(main, ["card", str(tiny_build.bundle_dir), "--format", "pdf"])
    assert result.exit_code == 2 and "unknown format 'pdf'" in result.output


def test_bench_eval_on_the_bundle_reproduces_the_card(tiny_build, tmp_path):
    """The device-side measurement of the shipped ONNX matches the build's, via eval_set.npz."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_build.bundle_dir, bundle)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            str(bundle),
            "--backend",
            "onnxruntime",
            "--eval",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--json",
            str(out),
            "--update-card",
        ],
    )
    assert result.exit_code == 0, result.output
    measured = json.loads(out.read_text())
    expected = tiny_build.card["models"]["onnx"]["metrics"]
    assert measured["eval"]["top1"] == pytest.approx(expected["top1"])
    assert measured["eval"]["mean_abs_disparity"] == pytest.approx(expected["mean_abs_disparity"])
    assert manifest_problems(bundle) == []
    card = json.loads((bundle / "card.json").read_text())
    assert card["bench"], "the result was merged into the card"
