"""Where a benchmark writes what it measured: ``benchmarks/results/<name>.json`` with the date,
the commit, the machine and the command beside the numbers, so a table in the docs is rendered
from the file (``scripts/render_results.py``) instead of typed.

``EDGEKD_BENCH_RESULTS`` names another folder (the tests write there, not into the repository).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def results_dir() -> Path:
    """``$EDGEKD_BENCH_RESULTS`` when set, else ``benchmarks/results``."""
    return Path(os.environ.get("EDGEKD_BENCH_RESULTS") or RESULTS)


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def write_result(name: str, data: dict) -> Path:
    """Write ``data`` under the run's provenance to ``<results folder>/<name>.json``."""
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "commit": _commit(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "load_1min": round(os.getloadavg()[0], 2),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        **data,
    }
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)  # a killed benchmark leaves the old file, never half of a new one
    return path
