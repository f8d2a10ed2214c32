"""The seeds benchmark (the seeds studies on the docs' results pages) runs end to end on the tiny
recipe: per-seed rows, mean and spread, the targets, and the plot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # its subprocess may take 900 s
def test_seeds_benchmark_on_the_tiny_recipe(tmp_path):
    plot = tmp_path / "seeds.png"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_quickstart_seeds.py"),
            "--recipe",
            str(ROOT / "tests" / "tiny.yaml"),
            "--seeds",
            "0,1",
            "--set",
            "debias.method=adversarial",
            "--out",
            str(tmp_path / "runs"),
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**os.environ, "EDGEKD_BENCH_RESULTS": str(tmp_path / "results")},
    )  # not the repo's
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("| 0 |") for line in lines) and any(line.startswith("| 1 |") for line in lines)
    assert any(line.startswith("| mean +- sd |") for line in lines)
    assert sum(line.strip().startswith(("PASS", "FAIL")) for line in lines) == 5
    assert "debiased: adversary accuracy" in run.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "results" / "seeds_tiny.json").is_file()
