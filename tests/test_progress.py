"""A build says what it is doing: recipe errors before torch loads, a line when each long step
starts and ends, and a summary that names what each stage did, every artifact's agreement with
the student and every gate."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.card.table import format_gate, format_stages, format_summary, summary_rows

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _imported(importtime: str) -> set[str]:
    """Module names of ``python -X importtime`` output."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_importing_the_recipe_imports_no_torch(tmp_path):
    done = _python(
        "-c",
        "import edgekd.recipe, sys; "
        "heavy = {'torch', 'timm', 'onnxruntime', 'scipy'} & set(sys.modules); "
        "assert not heavy, heavy",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_a_recipe_typo_is_one_line_before_torch_is_imported(tmp_path):
    text = (TESTS / "tiny.yaml").read_text().replace("\nseed: 0\n", "\nseeed: 0\n")
    (tmp_path / "typo.yaml").write_text(text)
    done = _python("-X", "importtime", "-m", "edgekd", "build", "typo.yaml", "--out", "runs", cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [
        "error: typo.yaml: seeed: unknown key; allowed here: name, version, seed, "
        "seeds, threads, data, teacher, student, distill, debias, export, card, bundle"
    ]
    imported = _imported(done.stderr)
    assert "edgekd.recipe" in imported  # the check would pass vacuously otherwise
    assert not {"torch", "timm", "onnxruntime"} & imported
    assert not (tmp_path / "runs").exists()


def test_an_unknown_arch_is_still_checked_against_timm(tiny_recipe):
    from edgekd.errors import EdgeKDError
    from edgekd.recipe import load_recipe

    with pytest.raises(
        EdgeKDError,
        match=r"student.arch = 'efficientnet_b99': 'efficientnet_b99' is "
        r"not a timm model",
    ):
        load_recipe(tiny_recipe, ["student.arch=efficientnet_b99"])


_DONE = re.compile(r"^(?P<result>.+) \(\d+\.\d s\)$")


def test_every_long_step_of_a_build_says_when_it_starts_and_ends(tiny_build, tmp_path, monkeypatch):
    """The trained stages of the shared tiny build are copied, so the evaluations, the exports,
    the TensorRT check, the card and the bundle run here, and every one is announced."""
    import torch

    from edgekd import build

    stages = tmp_path / "tiny" / "stages"
    for name in ("teacher", "baseline", "student", "teacher_outputs"):
        shutil.copytree(tiny_build.run_dir / "stages" / name, stages / name)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines: list[str] = []
    result = build(
        TESTS / "tiny.yaml",
        out=tmp_path,
        log=lines.append,
        overrides=("threads=auto", "export.fp16.enabled=true"),
    )
    assert lines[0] == "threads: 1 (OMP_NUM_THREADS=1; unset it for auto, or --set threads=N)"
    assert torch.get_num_threads() == 1
    assert result.stage_status["teacher"] == "reused" and result.stage_status["export"] == "trained"

    started = [line[:-4] for line in lines if line.endswith(" ...")]
    ended = {}
    for what in started:  # the closing line: "<what>: <result> (<seconds> s)", later on
        closing = [
            m["result"]
            for line in lines[lines.index(f"{what} ...") :]
            if line.startswith(f"{what}: ") and (m := _DONE.match(line[len(what) + 2 :]))
        ]
        assert len(closing) == 1, f"{what!r} starts but never says it ended"
        ended[what] = closing[0]
    card = result.card
    fp16 = card["models"]["onnx_fp16"]
    for expected in (
        "data: loading trifeature",
        "evaluating teacher on 128 test images",
        "evaluating student on 128 test images",
        "exporting model.onnx (torchscript, opset 17)",
        "checking model.onnx against torch on 128 test images",
        "exporting fp16 from model.onnx",
        "evaluating model.fp16.onnx on 128 test images",
        "card: metrics, class tests and 1000 bootstrap resamples of 5 models",
        "writing eval_set.npz (128 test images, compressed)",
        "bundle: drawing the card's plots",
        "bundle: writing tiny-0.1.0.tar.gz",
    ):
        assert expected in started, expected
    assert any(s.startswith("running model.fp16.onnx through onnxruntime") for s in started)
    assert any(s.startswith("tensorrt: checking model.onnx, model.fp16.onnx for ") for s in started)
    assert ended["evaluating student on 128 test images"] == (
        f"top-1 {card['models']['student']['metrics']['top1']:.4f}"
    )
    assert ended["evaluating model.fp16.onnx on 128 test images"] == (
        f"top-1 {fp16['metrics']['top1']:.4f}, agreement with the student "
        f"{fp16['vs_student']['prediction_agreement']:.4f}"
    )
    assert (
        started.index("evaluating student on 128 test images")
        < started.index("exporting model.onnx (torchscript, opset 17)")
        < started.index("exporting fp16 from model.onnx")
        < started.index("bundle: drawing the card's plots")
    )


def test_summary_of_a_real_build_names_stages_agreement_and_gates(tiny_build):
    card = tiny_build.card
    text = tiny_build.summary()
    lines = text.splitlines()
    assert lines[0].startswith("model     kind   top-1") and "agreement" in lines[0]
    end = lines[0].index("agreement") + len("agreement")  # numbers are right-aligned under it
    rows = {line.split()[0]: line[:end].split()[-1] for line in lines[2:6]}
    assert rows["teacher"] == rows["student"] == "-"  # torch models: the reference, not compared
    assert rows["onnx"] == f"{card['models']['onnx']['vs_student']['prediction_agreement']:.4f}"
    assert lines[5].startswith("onnx      onnx ")  # words left-aligned
    assert summary_rows(card)[3]["agreement"] == card["models"]["onnx"]["vs_student"]["prediction_agreement"]

    assert (
        "stages: teacher trained, baseline trained, student trained, model.onnx exported, TensorRT check run"
    ) in lines
    gates = card["gates"]
    assert f"gates: {len(gates)} of {len(gates)} pass" in lines
    onnx_gate = next(g for g in gates if g["name"] == "onnx_matches_torch")
    assert (
        f"  pass  onnx_matches_torch on onnx = {onnx_gate['value']:.4f} (needs >= 0.999): "
        f"argmax agreement with the torch student"
    ) in lines
    assert sum(line.startswith("  pass  ") for line in lines) == len(gates)
    assert lines[-1] == f"bundle: {tiny_build.bundle_dir}"


def test_a_failed_gate_and_reused_stages_read_as_such(tiny_build):
    card = copy.deepcopy(tiny_build.card)
    gate = next(g for g in card["gates"] if g["name"] == "onnx_matches_torch")
    gate.update(value=0.75, passed=False, threshold=0.999)
    text = format_summary(card, {"teacher": "reused", "student": "resumed", "artifacts": "trained"}, "b")
    assert f"gates: {len(card['gates']) - 1} of {len(card['gates'])} pass" in text.splitlines()
    assert format_gate(gate) == (
        "FAIL  onnx_matches_torch on onnx = 0.7500 (needs >= 0.999): argmax agreement with the torch student"
    )
    gate["value"] = None
    assert format_gate(gate).startswith("FAIL  onnx_matches_torch on onnx = undefined (needs")
    assert format_stages({"teacher": "reused", "student": "resumed", "artifacts": "trained"}) == (
        "stages: teacher reused, student resumed, artifacts built; reused: inputs unchanged since "
        "an earlier build"
    )
