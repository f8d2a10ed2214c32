"""At build time: is every file meant for TensorRT one the target's TensorRT will parse?

Two checks, both on the card (``deployment``) and both release gates:

* the rules of the target's TensorRT line (:mod:`edgekd.export.tensorrt_rules`), on every file
  meant for TensorRT: ``model.onnx`` (fp32, and fp16 through builder flags on 8.x/10.x),
  ``model.fp16.onnx`` (fp16 on 11.x) and ``model.int8.trt.onnx`` (INT8 from its Q/DQ nodes);
* where the ``[trt-check]`` extra is installed, TensorRT's own parser and builder: NVIDIA's
  TensorRT-RTX (``tensorrt-rtx-cu12``) parses each file and builds a serialized engine for a
  compute capability it supports (SM86), on a machine without a GPU. TensorRT-RTX is not Jetson's
  TensorRT (it has no SM87 and builds strongly typed networks only, as TensorRT 11 does): it is a
  proxy for the parser and builder, not the device, and the card says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.export.files import tensorrt_files
from edgekd.export.targets import DeploymentTarget
from edgekd.export.tensorrt import build_engine, tensorrt_api
from edgekd.export.tensorrt_rules import check_file, describe, line_label

__all__ = [
    "TENSORRT_FILES",
    "PROXY_COMPUTE_CAPABILITY",
    "proxy_module",
    "check_for_tensorrt",
    "tensorrt_gates",
]

# file meant for TensorRT -> the precision an engine built from it runs at
TENSORRT_FILES = {file: row.precision for file, row in tensorrt_files().items()}
PROXY_COMPUTE_CAPABILITY = "SM86"
MAX_PROBLEMS_KEPT = 20


def proxy_module():
    """TensorRT-RTX's Python module where the ``[trt-check]`` extra is installed, else None."""
    try:
        import tensorrt_rtx
    except (ImportError, OSError):  # not installed, or its libraries do not load here
        return None
    return tensorrt_rtx


def check_for_tensorrt(
    files: dict[str, Path], target: DeploymentTarget, *, image_size: int, proxy=None, log=lambda message: None
) -> dict:
    """The card's ``deployment`` block: the target, the rules check of each of ``files``
    (bundle file name -> path; only those of :data:`TENSORRT_FILES` are checked) and, with
    ``proxy`` (TensorRT-RTX's module, :func:`proxy_module`), its parse and build of each.

    Returns ``{"target": ..., "rules": {file: {...}}, "parser": {...}}``; a file that breaks a
    rule or that the parser cannot read fails its gate (:func:`tensorrt_gates`).
    """
    checked = {name: Path(path) for name, path in files.items() if name in TENSORRT_FILES}
    rules = {}
    for name, path in checked.items():
        problems = check_file(path, target.rules)
        rules[name] = {
            "line": target.rules,
            "passed": not problems,
            "count": len(problems),
            "problems": [p.record() for p in problems[:MAX_PROBLEMS_KEPT]],
            "summary": describe(problems, file=name, line=target.rules),
        }
        log(f"tensorrt: {rules[name]['summary']}")
    out = {"target": target.record(), "rules": rules}
    if proxy is None:
        out["parser"] = {
            "skipped": 'TensorRT-RTX is not installed (pip install "edgekd[trt-check]"): '
            "the files were checked by rules only"
        }
        return out
    api = tensorrt_api(proxy)
    parsed = {}
    with tempfile.TemporaryDirectory(prefix="edgekd-trt-check-") as tmp:
        for name, path in checked.items():
            precision = TENSORRT_FILES[name]
            try:
                engine = build_engine(
                    path,
                    Path(tmp) / f"{name}.engine",
                    precision=precision,
                    image_size=image_size,
                    min_batch=1,
                    opt_batch=8,
                    max_batch=32,
                    workspace_mb=256,
                    explicit_int8=precision == "int8",
                    trt=proxy,
                    compute_capability=PROXY_COMPUTE_CAPABILITY,
                    quiet=True,
                )
            except EdgeKDError as error:
                parsed[name] = {
                    "parsed": "cannot parse" not in str(error),
                    "built": False,
                    "precision": precision,
                    "error": str(error)[:400],
                }
            else:
                parsed[name] = {
                    "parsed": True,
                    "built": True,
                    "precision": precision,
                    "engine_bytes": engine.stat().st_size,
                }
            state = "parsed and built" if parsed[name]["built"] else parsed[name]["error"]
            log(
                f"tensorrt: {name}: {state} by {api.name} for {PROXY_COMPUTE_CAPABILITY} "
                f"(a proxy for {target.name})"
            )
    out["parser"] = {
        "name": api.name,
        "version": api.version,
        "proxy_for": target.name,
        "compute_capability": PROXY_COMPUTE_CAPABILITY,
        "note": f"Parsed and built by {api.name} (a proxy for {target.name}: the same ONNX "
        f"importer, strongly typed as TensorRT 11; not the device's TensorRT "
        f"{target.tensorrt})",
        "files": parsed,
    }
    return out


def tensorrt_gates(deployment: dict, artifacts: dict[str, str]) -> list[dict]:
    """The release gates of :func:`check_for_tensorrt`'s result: per checked file, its rules
    (``tensorrt_rules``: problems, at most 0) and, where the proxy ran, its parse and build
    (``tensorrt_parse``: 1 when built). ``artifacts`` maps a file to its model name on the card."""
    gates = []
    for name, result in deployment.get("rules", {}).items():
        first = result["problems"][0] if result["problems"] else None
        gates.append(
            {
                "name": "tensorrt_rules",
                "artifact": artifacts.get(name, name),
                "metric": f"rules of {line_label(result['line'])} broken",
                "threshold": 0,
                "comparison": "<=",
                "value": result["count"],
                "passed": result["passed"],
                **(
                    {
                        "detail": f"{name}: node {first['node']} ({first['op']}): {first['rule']}: "
                        f"{first['detail']}"
                    }
                    if first
                    else {}
                ),
            }
        )
    parser = deployment.get("parser", {})
    for name, result in parser.get("files", {}).items():
        gates.append(
            {
                "name": "tensorrt_parse",
                "artifact": artifacts.get(name, name),
                "metric": f"parsed and built by {parser['name']} (a proxy for {parser['proxy_for']})",
                "threshold": 1,
                "comparison": ">=",
                "value": 1 if result["built"] else 0,
                "passed": bool(result["built"]),
                **({"detail": f"{name}: {result['error']}"} if not result["built"] else {}),
            }
        )
    return gates
