"""deploy/gpu_check.sh where it cannot run: no GPU (or no TensorRT) is one line, exit 1, and
nothing written. The full check runs only on a machine with an NVIDIA GPU and TensorRT."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.export.tensorrt import tensorrt_status
from edgekd.export.tensorrt_check import proxy_module

SCRIPT = Path(__file__).parents[1] / "deploy" / "gpu_check.sh"


def _run(tmp_path, path: str, **env):
    home, tmp, cwd = (tmp_path / d for d in ("home", "tmp", "cwd"))
    for d in (home, tmp, cwd):
        d.mkdir(exist_ok=True)
    environment = {"PATH": path, "HOME": str(home), "TMPDIR": str(tmp), **env}
    proc = subprocess.run(
        ["bash", str(SCRIPT)], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )
    untouched = not any(any(p.iterdir()) for p in (home, tmp, cwd))
    return proc, untouched


def _edgekd_env():
    root = str(Path(__file__).parents[1])
    return {"PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def test_without_edgekd_it_stops_in_one_line_and_touches_nothing(tmp_path):
    proc, untouched = _run(tmp_path, "/usr/bin:/bin", PYTHON="/bin/false")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[0].startswith("gpu_check: /bin/false cannot import edgekd")
    assert untouched


def test_without_a_gpu_it_checks_the_files_by_rules_and_tensorrt_rtx(tmp_path):
    """No GPU here: one line says so, then the tiny bundle for JetPack 6.0 is built on the CPU and
    every file meant for TensorRT is checked against TensorRT 8.6's rules (and TensorRT-RTX's
    parser where installed)."""
    if shutil.which("nvidia-smi") or Path("/etc/nv_tegra_release").exists():
        pytest.skip("an NVIDIA GPU is here: the full check would run")
    proc, _ = _run(tmp_path, "/usr/bin:/bin", TARGET="orin-jetpack6.0", **_edgekd_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        "gpu_check: no NVIDIA GPU here (nvidia-smi not found): no engine can be built here; checking "
        "the files meant for TensorRT by the target's rules and TensorRT-RTX's parser instead"
    )
    for file in ("model.onnx", "model.fp16.onnx", "model.int8.trt.onnx"):
        assert f"tensorrt: {file}: passes the TensorRT 8.6 rules" in proc.stdout
    assert "every file passes for orin-jetpack6.0" in proc.stdout
    rtx = proxy_module()
    if rtx is not None:
        assert f"model.int8.trt.onnx: parsed and built by TensorRT-RTX {rtx.__version__}" in proc.stdout


def test_with_a_gpu_but_no_tensorrt_it_says_why_and_checks_instead(tmp_path):
    status = tensorrt_status()
    if status is None:
        pytest.skip("TensorRT and a GPU are here: the check would run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"  # a stand-in that lists one GPU
    smi.write_text("#!/bin/sh\necho 'GPU 0: Stand-in GPU (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    # an unknown target stops the CPU build at once: only the first line is of interest here
    proc, _ = _run(tmp_path, f"{bin_dir}:/usr/bin:/bin", TARGET="nano", **_edgekd_env())
    assert proc.stderr.splitlines()[0].startswith(f"gpu_check: {status}: no engine can be built here")
    assert proc.returncode != 0 and "export.target = 'nano'" in proc.stderr
