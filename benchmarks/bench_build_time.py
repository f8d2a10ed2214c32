"""How long a shipped recipe's whole build takes on this machine, from nothing to the bundle.

    python benchmarks/bench_build_time.py recipes/quickstart.yaml
    python benchmarks/bench_build_time.py recipes/fashion-mnist.yaml --set threads=2

Runs ``edgekd build RECIPE`` in a fresh runs folder (no stage reused) as a child process and
records its wall time, the CPU time of the build, its peak resident memory, the threads the build
chose (its first line) and the machine's load average before and after: a build time on a shared
2-core machine means little without the load it ran under. Writes
``benchmarks/results/build_time_<recipe name>.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", type=Path, help="runs folder to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    name = yaml.safe_load(args.recipe.read_text())["name"]
    with tempfile.TemporaryDirectory(prefix="edgekd-build-time-") as tmp:
        out = args.keep or Path(tmp)
        command = [sys.executable, "-m", "edgekd", "build", str(args.recipe), "--out", str(out)]
        for override in args.overrides:
            command += ["--set", override]
        load_before = os.getloadavg()
        start = time.perf_counter()
        child = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode not in (0, 1):  # 1: built, a release gate failed (the time still counts)
        sys.stderr.write(child.stdout[-4000:] + child.stderr[-4000:])
        print(f"build of {args.recipe} failed with exit {child.returncode}", file=sys.stderr)
        return 1
    lines = child.stdout.splitlines()
    threads_line = next((line for line in lines if line.startswith("threads:")), None)
    result = {
        "recipe": str(args.recipe),
        "name": name,
        "overrides": args.overrides,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "threads": threads_line,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "exit_code": child.returncode,
        "gates": next((line for line in lines if line.startswith("gates:")), None),
    }
    path = write_result(f"build_time_{name}", result)
    print(
        f"{args.recipe}: {wall / 60:.1f} min wall, {result['cpu_seconds'] / 60:.1f} min CPU, "
        f"peak {result['peak_rss_mib']:.0f} MiB; {threads_line}; load {load_before[0]:.1f} -> "
        f"{load_after[0]:.1f}; wrote {path}"
    )
    return child.returncode


if __name__ == "__main__":
    raise SystemExit(main())
