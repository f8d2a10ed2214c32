"""Regenerate ``edgekd/export/tensorrt_operators.json`` from onnx-tensorrt's operator tables.

    git clone https://github.com/onnx/onnx-tensorrt && python scripts/tensorrt_operators.py onnx-tensorrt

Reads ``docs/operators.md`` at the release branches named below (the tables TensorRT's own ONNX
parser is documented by) and writes, per rules line, the operators marked supported and the
types and restriction text. Data, not code, is taken from the tables.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SOURCES = {"8.5": "release/8.5-GA", "8.6": "release/8.6-GA", "10": "release/10.1-GA"}
OUT = Path(__file__).resolve().parents[1] / "edgekd" / "export" / "tensorrt_operators.json"
ROW = re.compile(r"^\|\s*([A-Za-z][A-Za-z0-9]*)\s*\|\s*(Y|N)\s*\|\s*([^|]*)\|?\s*([^|]*)")


def table(repo: Path, ref: str) -> dict:
    text = subprocess.run(
        ["git", "-C", str(repo), "show", f"{ref}:docs/operators.md"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    supported, types, restrictions = [], {}, {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match and match.group(2) == "Y":
            supported.append(match.group(1))
            types[match.group(1)] = [t.strip() for t in match.group(3).split(",") if t.strip()]
            if match.group(4).strip():
                restrictions[match.group(1)] = match.group(4).strip()
    header = next(line for line in text.splitlines() if "supports" in line and "pset" in line)
    ceiling = max(int(n) for n in re.findall(r"opset (\d+)", header, flags=re.IGNORECASE))
    return {
        "source": f"onnx-tensorrt {ref}: docs/operators.md",
        "max_opset": ceiling,
        "supported": sorted(supported),
        "types": types,
        "restrictions": restrictions,
    }


def main(repo: str) -> None:
    lines = {line: table(Path(repo), ref) for line, ref in SOURCES.items()}
    OUT.write_text(json.dumps(lines, indent=1, sort_keys=True) + "\n")
    print(
        f"{OUT}: "
        + ", ".join(
            f"{k} ({len(v['supported'])} operators, opset <= {v['max_opset']})" for k, v in lines.items()
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
