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

SCRIPT = Path(__file__).parents[1] / "deploy" / "gpu_check.sh"


def _run(tmp_path, path: str, **env):
    home, tmp, cwd = (tmp_path / d for d in ("home", "tmp", "cwd"))
    for d in (home, tmp, cwd):
        d.mkdir(exist_ok=True)
    environment = {"PATH": path, "HOME": str(home), "TMPDIR": str(tmp), **env}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=120)
    untouched = not any(any(p.iterdir()) for p in (home, tmp, cwd))
    return proc, untouched


def test_without_a_gpu_it_stops_in_one_line_and_touches_nothing(tmp_path):
    if shutil.which("nvidia-smi") or Path("/etc/nv_tegra_release").exists():
        pytest.skip("an NVIDIA GPU is here: the check would run")
    proc, untouched = _run(tmp_path, "/usr/bin:/bin")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "gpu_check: no NVIDIA GPU here (nvidia-smi not found); run this on a machine with an NVIDIA "
        "GPU and TensorRT"]
    assert untouched


def test_with_a_gpu_but_no_tensorrt_it_says_why_and_touches_nothing(tmp_path):
    status = tensorrt_status()
    if status is None:
        pytest.skip("TensorRT and a GPU are here: the check would run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"  # a stand-in that lists one GPU
    smi.write_text("#!/bin/sh\necho 'GPU 0: Stand-in GPU (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    root = str(Path(__file__).parents[1])
    proc, untouched = _run(tmp_path, f"{bin_dir}:/usr/bin:/bin", PYTHON=sys.executable,
                           PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"gpu_check: {status}"]
    assert untouched
