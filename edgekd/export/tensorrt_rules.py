"""What each TensorRT line's ONNX parser accepts, checked on a file before it ships.

A file TensorRT cannot parse is found on the device, by the user, too late. These rules are the
parser's documented restrictions (onnx-tensorrt ``docs/operators.md`` of each release, kept as
data in ``tensorrt_operators.json`` by ``scripts/tensorrt_operators.py``) and what its importer
does with Q/DQ and reductions:

=====================  =================================================================
rule                   what is checked
=====================  =================================================================
opset                  the default-domain opset is at most the line's ceiling (8.x: 17,
                       10.x and 11.x: 20)
operator               every node's operator is in the line's supported table (and in
                       the ONNX domain: no ``com.microsoft`` contrib operators)
dequantize-input       DequantizeLinear reads a quantized type of the line (8.x: int8;
                       10.x/11.x: int8, fp8, int4). onnxruntime's int32 biases break it.
zero-point             every Q/DQ zero point is 0 (TensorRT quantization is symmetric)
per-axis               a scale with more than one element (per-axis) only on weights:
                       activations are quantized per tensor
reduce-axes            8.x: a reduction's axes only as an attribute (opset <= 17; 8.x's
                       importer ignores an axes input and reduces over every axis, with no
                       error); 10.x/11.x: an axes input must be a constant
=====================  =================================================================

Line 11 uses 10.x's table, the newest one onnx-tensorrt publishes for a released parser here.

    problems = check_file("bundle/model.int8.trt.onnx", "8.6")
    # [RuleProblem(node='conv.bias_DequantizeLinear', op='DequantizeLinear',
    #              rule='dequantize-input', detail='reads int32; TensorRT 8.6 takes int8')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = [
    "RULES_LINES",
    "RuleProblem",
    "check_file",
    "check_model",
    "operator_table",
    "describe",
    "line_label",
]

RULES_LINES = ("8.5", "8.6", "10", "11")
_TABLE_OF = {"8.5": "8.5", "8.6": "8.6", "10": "10", "11": "10"}
_REDUCTIONS = {
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
}
_TYPE_NAMES = {"INT8": "INT8", "FP8": "FLOAT8E4M3FN", "INT4": "INT4", "UINT8": "UINT8"}


@dataclass(frozen=True)
class RuleProblem:
    """One place a file breaks a rule: the node (or ``model``), its operator, the rule, why."""

    node: str
    op: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"node {self.node} ({self.op}): {self.rule}: {self.detail}"

    def record(self) -> dict:
        return {"node": self.node, "op": self.op, "rule": self.rule, "detail": self.detail}


@cache
def _tables() -> dict:
    text = resources.files("edgekd.export").joinpath("tensorrt_operators.json").read_text()
    return json.loads(text)


def operator_table(line: str) -> dict:
    """The supported-operator table (``supported``, ``types``, ``restrictions``, ``max_opset``,
    ``source``) that rules line ``line`` checks against."""
    if line not in _TABLE_OF:
        raise EdgeKDError(f"TensorRT rules line {line!r}: choose one of: {', '.join(RULES_LINES)}")
    return _tables()[_TABLE_OF[line]]


def line_label(line: str) -> str:
    """``TensorRT 8.6``, ``TensorRT 10.x``."""
    return f"TensorRT {line}" + (".x" if "." not in line else "")


def check_file(path: str | Path, line: str) -> list[RuleProblem]:
    """Every rule ``path`` breaks for TensorRT line ``line`` (empty: the file passes)."""
    try:
        import onnx
    except ImportError:
        raise EdgeKDError(
            "the TensorRT rules check reads ONNX files with the onnx package: pip install onnx"
        ) from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # a truncated or foreign file: the user's to fix, one line
        raise EdgeKDError(f"{path}: not a readable ONNX file ({type(error).__name__})") from None
    return check_model(model, line)


def check_model(model, line: str) -> list[RuleProblem]:
    """:func:`check_file` on a loaded ``onnx.ModelProto``."""
    import onnx

    table = operator_table(line)
    label = line_label(line)
    problems: list[RuleProblem] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset > table["max_opset"]:
        problems.append(
            RuleProblem(
                "model", "-", "opset", f"opset {opset}; {label} parses opset {table['max_opset']} at most"
            )
        )
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    constants = set(initializers)
    for node in graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
    types = _tensor_types(model, initializers)
    supported = set(table["supported"])
    dq_types = {
        getattr(onnx.TensorProto, _TYPE_NAMES[t])
        for t in table["types"]["DequantizeLinear"]
        if t in _TYPE_NAMES and hasattr(onnx.TensorProto, _TYPE_NAMES[t])
    }
    dq_names = "/".join(t.lower() for t in table["types"]["DequantizeLinear"])
    for node in graph.node:
        name, op = node.name or (node.output[0] if node.output else "?"), node.op_type
        if node.domain not in ("", "ai.onnx"):
            problems.append(
                RuleProblem(
                    name,
                    op,
                    "operator",
                    f"operator of domain {node.domain!r}; {label} parses ONNX operators only",
                )
            )
            continue
        if op not in supported:
            problems.append(
                RuleProblem(name, op, "operator", f"{op} is not in {label}'s supported-operator table")
            )
        if op == "DequantizeLinear":
            dtype = types.get(node.input[0])
            if dtype is not None and dtype not in dq_types:
                problems.append(
                    RuleProblem(
                        name,
                        op,
                        "dequantize-input",
                        f"reads {_type_name(dtype)}; {label} takes {dq_names} "
                        f"(keep biases float: QuantizeBias off)",
                    )
                )
        if op in ("QuantizeLinear", "DequantizeLinear"):
            problems += _qdq_problems(node, name, initializers)
        if op in _REDUCTIONS and len(node.input) > 1 and node.input[1]:
            if line in ("8.5", "8.6"):
                problems.append(
                    RuleProblem(
                        name,
                        op,
                        "reduce-axes",
                        f"axes given as an input (opset 18); {label} reads "
                        f"axes only as an attribute and would reduce over "
                        f"every axis: export at opset 17",
                    )
                )
            elif node.input[1] not in constants:
                problems.append(
                    RuleProblem(
                        name,
                        op,
                        "reduce-axes",
                        f"axes input {node.input[1]!r} is not a constant; {label} needs it as an initializer",
                    )
                )
    return problems


def _qdq_problems(node, name: str, initializers: dict) -> list[RuleProblem]:
    from onnx import numpy_helper

    problems = []
    if len(node.input) > 2 and node.input[2]:
        zero = initializers.get(node.input[2])
        if zero is not None and numpy_helper.to_array(zero).any():
            problems.append(
                RuleProblem(
                    name,
                    node.op_type,
                    "zero-point",
                    "a non-zero zero point; TensorRT quantization is symmetric (zero point 0)",
                )
            )
    scale = initializers.get(node.input[1]) if len(node.input) > 1 else None
    per_axis = scale is not None and numpy_helper.to_array(scale).size > 1
    if per_axis and node.input[0] not in initializers:
        problems.append(
            RuleProblem(
                name,
                node.op_type,
                "per-axis",
                "per-axis scales on an activation; TensorRT takes per-axis scales on weights only",
            )
        )
    return problems


def _tensor_types(model, initializers: dict) -> dict[str, int]:
    """The element type of every tensor whose type is known: initializers, graph inputs and
    outputs, Q outputs (their zero point's type, uint8 without one) and shape inference."""
    import onnx

    types = {name: t.data_type for name, t in initializers.items()}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        infos = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    except Exception:  # a graph shape inference cannot read: fall back to what is declared
        infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    for info in infos:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types.setdefault(info.name, info.type.tensor_type.elem_type)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.output:
            zero = initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            types[node.output[0]] = zero.data_type if zero is not None else onnx.TensorProto.UINT8
    return types


def _type_name(dtype: int) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(dtype).lower()


def describe(problems: list[RuleProblem], *, file: str, line: str) -> str:
    """One line for a file's problems: the first, and how many more."""
    if not problems:
        return f"{file}: passes the {line_label(line)} rules"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{file} breaks the {line_label(line)} parser's rules: {problems[0]}{more}"
