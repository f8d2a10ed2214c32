"""Where a benchmark writes what it measured: ``benchmarks/results/<name>.json`` with the date,
the commit, the machine and the command beside the numbers, so a table in the docs can be
rendered from the file instead of typed."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def write_result(name: str, data: dict) -> Path:
    """Write ``data`` under the run's provenance to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(exist_ok=True)
    record = {"benchmark": name, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              "commit": _commit(), "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": {"cpus": os.cpu_count(), "processor": platform.machine(),
                          "python": platform.python_version()},
              **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path
