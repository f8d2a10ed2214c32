"""INT8 ONNX: onnxruntime static quantization (QDQ), in two forms, each checked against fp32.

* ``cpu`` -> ``model.int8.onnx``: activations ``uint8`` (U8S8), what onnxruntime's x86 CPU kernels
  run natively (signed activations run several times slower there; ``benchmarks/bench_runtimes.py
  --int8 FILE`` times any INT8 file against fp32).
* ``tensorrt`` -> ``model.int8.trt.onnx``: activations and weights ``int8`` and symmetric (every
  zero point 0), biases kept float (onnxruntime quantizes them to int32 by default, and TensorRT's
  parser takes DequantizeLinear only on int8: an int32 bias fails at its first node), per-axis
  scales on weights only: the form TensorRT's explicit quantization and the GPU execution
  providers take (checked by :mod:`edgekd.export.tensorrt_rules`); with it ships
  ``calibration.cache``, the shipped file's activation scales in TensorRT's cache format, for
  building an INT8 engine from ``model.onnx`` on the device instead (left out when the shipped
  file was INT8-aware fine-tuned: its scales belong to the fine-tuned weights, not model.onnx's).

Both are QDQ (QuantizeLinear/DequantizeLinear pairs around each quantized op) with per-channel
weights, calibrated on ``calibration_samples`` training images by ``method``: ``minmax`` (the
observed range), ``entropy`` (the range minimising the KL divergence between float and quantized
histograms, TensorRT's method) or ``percentile`` (the 99.999th percentile of |x|). The model is
first pre-processed (shape inference, graph optimisation) as onnxruntime recommends.

Post-training INT8 can move many of a small model's predictions. So each form is checked: its
argmax agreement with the fp32 model on the validation images (weighted per (class, group) cell
as a balanced split would count them) must reach ``min_agreement``, and the agreement of its
worst (class, group) cell of at least :data:`MIN_CELL_IMAGES` validation images must reach
``min_cell_agreement`` (a weighted mean of 0.98 can hide one cell at 0.80: compression costs the
under-represented cells most, Hooker et al. 2020); below either, groups of the layers INT8 hurts
most are kept in float, one group at a time, cheapest first (:func:`sensitive_groups`: the first
and last layers, the squeeze-and-excitation blocks, the SiLU and residual element-wise ops, the
depthwise convolutions); the search ends at the first try that reaches both bounds, or when
every group is in float (one group that does not gain says nothing of the next).

With ``qat`` (``auto``, the default), where that search misses the bound and an estimate of the
fine-tuning's time (:func:`edgekd.export.qat.probe_fine_tuning`, a few timed steps) fits
``qat_budget_minutes``, a copy of the student is fine-tuned under simulated INT8
(:mod:`edgekd.export.qat`, ``qat_steps`` steps), exported, quantized and searched the same way,
its agreement measured against the original student's ``model.onnx``. A student whose
activations span thousands (late squeeze-and-excitation blocks) can lose half its predictions
to post-training INT8 that no group of layers kept in float gives back; fine-tuning does.

What ships is :func:`shipped_try` over every try of both: the cheapest (fewest layers in float)
that reaches the bound, else the best measured; one log line and the card say which and why
(``export.shipped``). A shipped file below a bound fails the release gate
``int8_min_agreement`` or ``int8_min_cell_agreement`` (:func:`edgekd.card.gates.int8_gates`)
unless ``on_miss: warn``. The card records every try, each with its worst cell.

The calibration images are drawn evenly over the (class, group) cells (``balanced_calibration``),
so the small cells' activations count in the ranges as the card's cell-balanced scores count
them; more images widen minmax ranges rather than helping. Where a student's top-2 logit margins
are small, no choice of layers kept in float reaches the bound: the margins are the limit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from edgekd.config import Section
from edgekd.data.rows import take
from edgekd.errors import EdgeKDError
from edgekd.export.artifact import Artifact, ExportContext
from edgekd.export.calibration_cache import write_tensorrt_cache
from edgekd.export.files import ARTIFACT_FILES, CALIBRATION_CACHE
from edgekd.export.runtime import OnnxClassifier, cpu_runtime_name, normalise
from edgekd.fairness.compression import worst_cell_agreement

__all__ = [
    "CALIBRATION_METHODS",
    "FORMS",
    "Int8Config",
    "Int8Form",
    "Int8Result",
    "quantize_int8",
    "quantize_to_agreement",
    "sensitive_groups",
    "qdq_activation_scales",
    "shipped_try",
    "shipped_reason",
    "decide_fine_tuning",
    "export_int8",
]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# The fewest validation images a (class, group) cell needs to count for min_cell_agreement: one
# flip in such a cell is 0.2 of its agreement, which the default bound 0.8 still lets pass.
MIN_CELL_IMAGES = 5


@dataclass(frozen=True)
class Int8Form:
    """One INT8 file: its artifact name, file, activation type and symmetry."""

    name: str
    file: str
    activations: str
    symmetric: bool
    runtime_note: str
    quantize_bias: bool = True  # int32 biases (onnxruntime's default); TensorRT takes float ones


FORMS = {
    "cpu": Int8Form(
        "onnx_int8", ARTIFACT_FILES["onnx_int8"].file, "uint8", False, "U8S8, onnxruntime's CPU kernels"
    ),
    "tensorrt": Int8Form(
        "onnx_int8_trt",
        ARTIFACT_FILES["onnx_int8_trt"].file,
        "int8",
        True,
        "S8S8 symmetric, zero points 0, float biases: TensorRT and GPU execution providers",
        quantize_bias=False,
    ),
}


class Int8Config(Section):
    """``export.int8``: INT8 ONNX files by onnxruntime static quantization (QDQ, per-channel weights)."""

    enabled: bool = False
    forms: list[Literal["cpu", "tensorrt"]] = Field(
        default_factory=lambda: ["cpu", "tensorrt"],
        min_length=1,
        description="cpu: model.int8.onnx (U8S8); tensorrt: model.int8.trt.onnx (symmetric S8S8) "
        "and calibration.cache",
    )
    calibration_samples: int = Field(256, ge=1, le=100_000, description="training images")
    balanced_calibration: bool = Field(
        True,
        description="draw the calibration images evenly over the (class, group) cells rather "
        "than as they come (a biased split under-represents its minority cells)",
    )
    method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="onnxruntime's calibration method for the activation ranges"
    )
    min_agreement: float = Field(
        0.97,
        ge=0.0,
        le=1.0,
        description="argmax agreement with fp32 on the validation images below "
        "which sensitive layers are kept in float",
    )
    min_cell_agreement: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="argmax agreement with fp32 in the worst (class, group) cell of at least 5 "
        "validation images below which sensitive layers are kept in float too (gate "
        "int8_min_cell_agreement). Default 0.8: one flip in a 5-image cell; the "
        "quickstart's shipped files measure 0.956 (model.int8.onnx) and 0.978 "
        "(model.int8.trt.onnx) on validation cells of 7 to 93 images, 0.94 and 0.96 on "
        "the test split's 100-image cells",
    )
    on_miss: Literal["fail", "warn"] = Field(
        "fail",
        description="when the shipped file stays below min_agreement: fail (the release "
        "gate int8_min_agreement fails: edgekd build and card --check exit 1) "
        "or warn (the gate is on the card, marked warn, and the build passes)",
    )
    qat: Literal["auto", "on", "off"] = Field(
        "auto",
        description="INT8-aware fine-tuning of a copy of the student before quantizing "
        "(edgekd.export.qat): auto when post-training INT8, layers kept in "
        "float included, misses min_agreement and the estimated time fits "
        "qat_budget_minutes; on: always; off: never (then only layers kept "
        "in float raise agreement)",
    )
    qat_budget_minutes: float = Field(
        10.0,
        ge=0.0,
        le=100_000.0,
        description="with qat auto: the longest INT8-aware fine-tuning (all forms that need it, "
        "estimated from a few timed steps) that runs without being asked",
    )
    qat_steps: int = Field(
        1200,
        ge=1,
        le=1_000_000,
        description="fine-tuning steps (batches of 32 "
        "training images, cell-balanced; "
        "fresh ones each pass where the "
        "source generates them)",
    )
    qat_lr: float = Field(5e-4, gt=0.0, le=1.0, description="AdamW learning rate, cosine to 0")

    @field_validator("qat", mode="before")
    @classmethod
    def _yaml_on_off(cls, value):
        """YAML reads a bare ``on``/``off`` as a boolean."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


@dataclass
class Int8Result:
    """A quantized file and how it got there: its agreement with fp32 on the check images, the
    layer groups kept in float, and every try."""

    path: Path
    agreement: float
    kept_in_float: list[str]
    float_nodes: int
    tries: list[dict] = field(default_factory=list)
    reached: bool = True
    fine_tuned: bool = False
    shipped: int = 0  # the index in ``tries`` of the try that ships
    worst_cell: dict | None = None  # the shipped try's worst cell on the check images


def _methods():
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }


def _reader(onnx_path: Path, images: np.ndarray, mean, std, batch_size: int):
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class _Images(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(range(0, len(images), batch_size))

        def get_next(self):
            start = next(self._batches, None)
            if start is None:
                return None
            return {input_name: normalise(take(images, slice(start, start + batch_size)), mean, std)}

    return _Images()


def quantize_int8(
    onnx_path: Path,
    out_path: Path,
    calibration_images: np.ndarray,
    mean,
    std,
    *,
    method: str = "minmax",
    activations: str = "uint8",
    symmetric: bool = False,
    exclude: list[str] | tuple[str, ...] = (),
    batch_size: int = 32,
    pre_process: bool = True,
    quantize_bias: bool = True,
) -> Path:
    """Write a QDQ INT8 copy of ``onnx_path`` calibrated on uint8 images (N, H, W, 3).

    ``activations`` is ``uint8`` or ``int8``; ``symmetric`` makes every activation and weight
    range symmetric (zero point 0); ``exclude`` names nodes kept in float; ``pre_process=False``
    when ``onnx_path`` is already pre-processed; ``quantize_bias=False`` keeps Conv and Gemm
    biases float (no int32 DequantizeLinear: the TensorRT form).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    methods = _methods()
    if method not in methods:
        raise EdgeKDError(
            f"export.int8.method: unknown method {method!r}; choose one of: {', '.join(CALIBRATION_METHODS)}"
        )
    activation_types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if activations not in activation_types:
        raise EdgeKDError(
            f"export.int8.activations: unknown type {activations!r}; choose one of: "
            f"{', '.join(activation_types)}"
        )
    if len(calibration_images) == 0:
        raise EdgeKDError("export.int8.calibration_samples: no calibration images")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        source = Path(onnx_path)
        if pre_process:
            source = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(onnx_path), str(source), skip_symbolic_shape=True)
        staged = Path(tmp) / out_path.name
        quantize_static(
            str(source),
            str(staged),
            _reader(source, calibration_images, mean, std, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=activation_types[activations],
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            nodes_to_exclude=list(exclude),
            extra_options={
                "ActivationSymmetric": symmetric,
                "WeightSymmetric": True,
                "QuantizeBias": quantize_bias,
            },
        )
        staged.replace(out_path)
    return out_path


def sensitive_groups(onnx_path: Path) -> list[tuple[str, list[str]]]:
    """Groups of node names that INT8 hurts most in an EfficientNet-like classifier, in the order
    they are kept in float: the first convolution and the head (last convolution and
    classifier); the squeeze-and-excitation blocks (from each inner global pooling to the Mul
    that rescales); the element-wise ops (the Sigmoid and Mul of SiLU, residual Adds); the
    depthwise convolutions. Found from the graph's structure, not from layer names."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    nodes = list(graph.node)
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    gemms = [n for n in nodes if n.op_type in ("Gemm", "MatMul")]
    edges = (
        ([convs[0].name] if convs else [])
        + ([convs[-1].name] if convs else [])
        + ([gemms[-1].name] if gemms else [])
    )
    se: list[str] = []
    pools = [n for n in nodes if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    for pool in pools[:-1]:  # the last pooling feeds the classifier
        frontier, seen = [pool], set()
        while frontier:
            node = frontier.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            se.append(node.name)
            if node.op_type == "Mul" and node is not pool:
                continue  # the rescaling Mul ends the block
            for out in node.output:
                frontier.extend(consumers.get(out, []))
    se = [n for n in dict.fromkeys(se) if n not in edges]
    elementwise = [
        n.name for n in nodes if n.op_type in ("Sigmoid", "Mul", "Add", "HardSigmoid") and n.name not in se
    ]
    depthwise = [
        n.name
        for n in convs
        if any(a.name == "group" and a.i > 1 for a in n.attribute)
        and n.name not in edges
        and n.name not in se
    ]
    groups = [
        ("first and last layers", edges),
        ("squeeze-and-excitation blocks", se),
        ("element-wise ops (SiLU, residual adds)", elementwise),
        ("depthwise convolutions", depthwise),
    ]
    return [(label, names) for label, names in groups if names]


def _cell(attempt: dict) -> float | None:
    """The agreement of a try's worst cell (None: not measured, as in tries from before)."""
    worst = attempt.get("worst_cell")
    return worst.get("agreement") if isinstance(worst, dict) else None


def reaches(attempt: dict, min_agreement: float, min_cell_agreement: float | None = None) -> bool:
    """Whether a try reaches ``min_agreement`` and (when given and the try measured one) has its
    worst cell at ``min_cell_agreement`` or above."""
    cell = _cell(attempt)
    return attempt["agreement"] >= min_agreement and (
        min_cell_agreement is None or cell is None or cell >= min_cell_agreement
    )


def shipped_try(tries: Sequence[dict], min_agreement: float, min_cell_agreement: float | None = None) -> int:
    """The index of the try that ships: of the tries that :func:`reaches` both bounds, the
    cheapest (fewest ``float_nodes``; then the higher agreement, then the earlier); when none
    does, the one that misses least: the smallest shortfall ``max(min_agreement - agreement,
    min_cell_agreement - worst cell)`` (without a cell bound, the highest agreement; the earlier
    on a tie).

    A key, not a scan, so that the choice over two searches' tries (post-training, then after
    fine-tuning) is the same as each search's own choice whenever it falls in that search.

    Examples
    --------
    >>> shipped_try([{"agreement": 0.89, "float_nodes": 0}, {"agreement": 0.92, "float_nodes": 3},
    ...              {"agreement": 0.90, "float_nodes": 9}], 0.97)
    1
    >>> cell = lambda a: {"class": "square", "group": "cool", "agreement": a, "images": 10}
    >>> shipped_try([{"agreement": 0.99, "float_nodes": 0, "worst_cell": cell(0.6)},
    ...              {"agreement": 0.98, "float_nodes": 3, "worst_cell": cell(0.9)}], 0.97, 0.8)
    1
    """
    if not tries:
        raise ValueError("no tries to choose from")

    def key(index: int) -> tuple:
        attempt = tries[index]
        if reaches(attempt, min_agreement, min_cell_agreement):
            return 0, attempt.get("float_nodes", 0), -attempt["agreement"], index
        short = min_agreement - attempt["agreement"]
        cell = _cell(attempt)
        if min_cell_agreement is not None and cell is not None:
            short = max(short, min_cell_agreement - cell)
        return 1, 0, short, -attempt["agreement"], index

    return min(range(len(tries)), key=key)


def _kept(attempt: dict) -> str:
    return f"keeping {', '.join(attempt['kept_in_float']) or 'nothing'} in float" + (
        f" {attempt['note']}" if attempt.get("note") else ""
    )


def shipped_reason(
    tries: Sequence[dict], index: int, min_agreement: float, min_cell_agreement: float | None = None
) -> str:
    """Which try ships and why, in words (the card's ``export.shipped.reason``, and the log line's
    with the gate's outcome after it): ``"0.9169 keeping first and last layers in float, the best
    of 4 tries; below min_agreement 0.97"``; with a cell bound, the try's worst cell after its
    agreement and the bound or bounds it misses: ``"0.9850 (worst cell square / cool 0.7000)
    keeping nothing in float, the best of 1 try; below min_cell_agreement 0.8"`` (the best: the
    one :func:`shipped_try` chose, closest to the bounds)."""
    attempt = tries[index]
    count = f"{len(tries)} tries" if len(tries) > 1 else "1 try"
    worst = attempt.get("worst_cell") if min_cell_agreement is not None else None
    cell = (
        f" (worst cell {worst['class']} / {worst['group']} {worst['agreement']:.4f})"
        if isinstance(worst, dict)
        else ""
    )
    head = f"{attempt['agreement']:.4f}{cell} {_kept(attempt)}"
    bounds = (
        f"min_agreement {min_agreement}"
        if min_cell_agreement is None
        else f"min_agreement {min_agreement} and min_cell_agreement {min_cell_agreement}"
    )
    if reaches(attempt, min_agreement, min_cell_agreement):
        reaching = sum(reaches(t, min_agreement, min_cell_agreement) for t in tries)
        return (
            f"{head}, the cheapest (fewest layers in float) of the {reaching} of {count} that reach {bounds}"
            if reaching > 1
            else f"{head}, the one of {count} that reaches {bounds}"
        )
    missed = [f"min_agreement {min_agreement}"] if attempt["agreement"] < min_agreement else []
    cell_value = _cell(attempt)
    if min_cell_agreement is not None and cell_value is not None and cell_value < min_cell_agreement:
        missed.append(f"min_cell_agreement {min_cell_agreement}")
    return f"{head}, the best of {count}; below {' and '.join(missed)}"


def quantize_to_agreement(
    onnx_path: Path,
    out_path: Path,
    calibration_images: np.ndarray,
    check_images: np.ndarray,
    mean,
    std,
    *,
    form: Int8Form,
    method: str = "minmax",
    min_agreement: float = 0.97,
    check_weights: np.ndarray | None = None,
    min_cell_agreement: float | None = None,
    check_labels: np.ndarray | None = None,
    check_groups: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    group_names: Sequence[str] = (),
    threads: int | None = None,
    reference_path: Path | None = None,
    search: bool = True,
    note: str = "",
    log=lambda message: None,
) -> Int8Result:
    """Quantize ``onnx_path`` to ``form``, keeping one more of :func:`sensitive_groups` in float
    per try (cumulatively, cheapest first) until a try reaches the bounds or every group is kept.

    The search does not stop at a group that fails to gain: the groups are different kinds of
    layers, and one kind not helping says nothing of the next (a student whose first and last
    layers in float lose agreement can reach the bound once its element-wise ops are float too:
    ``benchmarks/bench_int8_search.py``). At most ``1 + len(groups)`` tries, each a calibration
    and one pass over the check images.

    The fp32 predictions to agree with are ``reference_path``'s (default: ``onnx_path`` itself;
    after INT8-aware fine-tuning, the original student's file). ``search=False`` makes only the
    all-INT8 try. ``note`` is added to each try's log line and record (``"after INT8-aware
    fine-tuning"``).

    ``check_weights`` weigh the check images' agreement (the build passes the validation split's
    :func:`~edgekd.data.splits.cell_weights`, so that a biased validation split counts its
    (class, group) cells as a balanced test split will: flips concentrate in the minority cells).

    With ``check_labels`` and ``check_groups`` (and the names), each try also records its
    ``worst_cell`` (:func:`~edgekd.fairness.compression.worst_cell_agreement` over the cells of at
    least :data:`MIN_CELL_IMAGES` check images), and with ``min_cell_agreement`` a try reaches the
    bound only when that cell does too (:func:`reaches`).

    Returns :func:`shipped_try` of the tries: the first that reaches the bounds (the search
    ends there, and each try keeps more in float), or else the best measured (``reached=False``).
    """
    from onnxruntime.quantization import quant_pre_process

    out_path = Path(out_path)
    reference = (
        OnnxClassifier(reference_path or onnx_path, threads=threads)
        .predict_images(check_images, mean, std)
        .argmax(1)
    )
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        plan = [("nothing", [])] + (sensitive_groups(prepared) if search else [])
        kept_labels: list[str] = []
        kept_nodes: list[str] = []
        tries: list[dict] = []
        files: list[Path] = []
        for step, (label, names) in enumerate(plan):
            if names:
                kept_labels.append(label)
                kept_nodes += names
            candidate = quantize_int8(
                prepared,
                Path(tmp) / f"try{step}.onnx",
                calibration_images,
                mean,
                std,
                method=method,
                activations=form.activations,
                symmetric=form.symmetric,
                exclude=kept_nodes,
                pre_process=False,
                quantize_bias=form.quantize_bias,
            )
            predicted = OnnxClassifier(candidate, threads=threads).predict_images(check_images, mean, std)
            agrees = predicted.argmax(1) == reference
            agreement = float(np.average(agrees, weights=check_weights))
            worst = (
                None
                if check_labels is None
                else worst_cell_agreement(
                    check_labels,
                    reference,
                    predicted.argmax(1),
                    check_groups,
                    class_names=_names(class_names, check_labels),
                    group_names=_names(group_names, check_groups),
                    min_support=MIN_CELL_IMAGES,
                )
            )
            attempt = {
                "kept_in_float": list(kept_labels),
                "float_nodes": len(kept_nodes),
                "agreement": agreement,
                **({"worst_cell": worst} if check_labels is not None else {}),
                **({"note": note} if note else {}),
            }
            tries.append(attempt)
            files.append(candidate)
            log(
                f"export: {form.file}: agreement with fp32 {agreement:.4f}"
                + (
                    f" (worst cell {worst['class']} / {worst['group']} {worst['agreement']:.4f})"
                    if worst
                    else ""
                )
                + f" keeping {', '.join(kept_labels) or 'nothing'} in float"
                + (f" {note}" if note else "")
            )
            if reaches(attempt, min_agreement, min_cell_agreement):
                break  # the cheapest that reaches the bounds: more float only costs speed
        index = shipped_try(tries, min_agreement, min_cell_agreement)
        files[index].replace(out_path)
    chosen = tries[index]
    return Int8Result(
        path=out_path,
        agreement=chosen["agreement"],
        kept_in_float=list(chosen["kept_in_float"]),
        float_nodes=chosen["float_nodes"],
        tries=tries,
        reached=reaches(chosen, min_agreement, min_cell_agreement),
        shipped=index,
        worst_cell=chosen.get("worst_cell"),
    )


def _names(names: Sequence[str], values: np.ndarray) -> list[str]:
    """The given class or group names, or the indices as names."""
    return list(names) or [str(i) for i in range(int(np.max(values, initial=0)) + 1)]


def qdq_activation_scales(qdq_path: Path, reference_path: Path | None = None) -> dict[str, float]:
    """``{tensor: scale}`` of every activation a QDQ file quantizes (per-tensor
    QuantizeLinear nodes on non-constant inputs), named as in ``reference_path`` (the fp32
    ``model.onnx``; onnxruntime renames a graph output it quantizes to
    ``<name>_QuantizeLinear_Input``); tensors ``reference_path`` lacks are left out."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(qdq_path), load_external_data=False).graph
    initializers = {t.name: t for t in graph.initializer}
    known = None
    if reference_path is not None:
        reference = onnx.load(str(reference_path), load_external_data=False).graph
        known = {i.name for i in reference.input} | {o for n in reference.node for o in n.output}
    scales = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers:
            continue
        scale = numpy_helper.to_array(initializers[node.input[1]]) if node.input[1] in initializers else None
        if scale is None or scale.size != 1:
            continue
        name = node.input[0].removesuffix("_QuantizeLinear_Input")
        if known is None or name in known:
            scales[name] = float(scale.reshape(()))
    return scales


def decide_fine_tuning(
    mode: str, *, minutes: float, budget_minutes: float, steps: int, forms: int
) -> tuple[bool, str]:
    """Whether INT8-aware fine-tuning runs, and the line that says so before it starts.

    ``mode`` is ``export.int8.qat`` (``on`` or ``auto``; ``off`` never gets here); ``minutes``
    the estimate for all ``forms`` that need it (:meth:`edgekd.export.qat.FineTuningCost.minutes`
    times ``forms``). ``on`` always runs; ``auto`` runs when ``minutes <= budget_minutes``.
    """
    from edgekd.export.qat import format_minutes

    what = (
        f"INT8 fine-tuning: about {format_minutes(minutes * 60)} for {steps} steps x {forms} "
        f"form{'s' if forms != 1 else ''}"
    )
    if mode == "on":
        return True, f"{what} (export.int8.qat: on): running"
    if minutes <= budget_minutes:
        return True, f"{what}, within export.int8.qat_budget_minutes {budget_minutes:g}: running"
    return False, (
        f"{what}, above export.int8.qat_budget_minutes {budget_minutes:g}: skipped (set "
        f"export.int8.qat=on to run it)"
    )


QAT_BATCH = 32  # the fine-tuning's batch (Int8Config.qat_steps says so)


def export_int8(cfg: Int8Config, ctx: ExportContext) -> list[Artifact]:
    """The ``export.int8`` row of :mod:`edgekd.export.formats`: one file per form of
    ``cfg.forms``, each searched to ``min_agreement``, then (with ``qat``) INT8-aware fine-tuned
    where that misses and the estimate fits the budget (every form that needs it, after all
    forms were searched, so that the estimate covers them all), the TensorRT form with its
    calibration cache. Each form ships :func:`shipped_try` of all its tries, said in one line."""
    from edgekd.card.gates import INT8_CELL_GATE, INT8_GATE
    from edgekd.data.splits import cell_weights
    from edgekd.export.qat import format_minutes, probe_fine_tuning

    calibration = (
        ctx.calibration.cell_balanced(cfg.calibration_samples)
        if cfg.balanced_calibration
        else ctx.calibration
    )
    images = calibration.images[: cfg.calibration_samples]
    weights = cell_weights(ctx.check.labels, ctx.check.groups)
    searches = {
        key: dict(
            form=FORMS[key],
            method=cfg.method,
            min_agreement=cfg.min_agreement,
            check_weights=weights,
            min_cell_agreement=cfg.min_cell_agreement,
            check_labels=ctx.check.labels,
            check_groups=ctx.check.groups,
            class_names=ctx.class_names,
            group_names=ctx.group_names,
            threads=ctx.threads,
            log=ctx.log,
        )
        for key in cfg.forms
    }
    # off and auto: the float-layer search on the student as it is (seconds); on: only its
    # all-INT8 try before the fine-tuned copy's search
    results = {
        key: quantize_to_agreement(
            ctx.onnx_path,
            ctx.out_dir / FORMS[key].file,
            images,
            ctx.check.images,
            ctx.mean,
            ctx.std,
            search=cfg.qat != "on",
            **searches[key],
        )
        for key in cfg.forms
    }
    need = [key for key in cfg.forms if cfg.qat == "on" or (cfg.qat == "auto" and not results[key].reached)]
    decision = None
    if need:
        cost = probe_fine_tuning(
            ctx.student,
            lambda epoch: ctx.calibration,
            images,
            ctx.mean,
            ctx.std,
            symmetric=FORMS[need[0]].symmetric,
            batch_size=QAT_BATCH,
        )
        estimate = cost.minutes(steps=cfg.qat_steps) * len(need)
        run, line = decide_fine_tuning(
            cfg.qat,
            minutes=estimate,
            budget_minutes=cfg.qat_budget_minutes,
            steps=cfg.qat_steps,
            forms=len(need),
        )
        ctx.log(f"export: {line}")
        decision = {
            "forms": [FORMS[key].file for key in need],
            "ran": run,
            "budget_minutes": cfg.qat_budget_minutes,
            "by": "export.int8.qat: on"
            if cfg.qat == "on"
            else f"estimate {'within' if run else 'above'} export.int8.qat_budget_minutes",
        }
        if run:
            seconds = 0.0
            for key in need:
                results[key], took = _with_fine_tuning(
                    cfg, ctx, FORMS[key], results[key], images, searches[key]
                )
                seconds += took
            ctx.log(
                f"export: INT8 fine-tuning took {format_minutes(seconds)} for {len(need)} "
                f"form{'s' if len(need) != 1 else ''} (estimated {format_minutes(estimate * 60)})"
            )
    artifacts = []
    for key in cfg.forms:
        form, result = FORMS[key], results[key]
        reason = shipped_reason(result.tries, result.shipped, cfg.min_agreement, cfg.min_cell_agreement)
        missed = [
            gate
            for gate, miss in (
                (INT8_GATE, result.agreement < cfg.min_agreement),
                (INT8_CELL_GATE, (result.worst_cell or {}).get("agreement", 1.0) < cfg.min_cell_agreement),
            )
            if miss
        ]
        verb = "fails" if cfg.on_miss == "fail" else "only warns"
        outcome = (
            ""
            if not missed
            else " -> "
            + ", ".join(f"gate {gate} {verb}" for gate in missed)
            + (
                " (export.int8.on_miss=warn ships it with a warning)"
                if cfg.on_miss == "fail"
                else " (export.int8.on_miss: warn)"
            )
        )
        ctx.log(
            f"export: {form.file} (INT8 QDQ {form.activations}, {cfg.method} calibration): "
            f"shipped: {reason}{outcome}"
        )
        extra, cache = {}, {}
        if key == "tensorrt":  # the shipped file's scales, for implicit INT8 from model.onnx
            if result.fine_tuned:
                cache = {
                    "file": None,
                    "left_out": "the shipped file was INT8-aware fine-tuned: its "
                    "scales belong to the fine-tuned weights, not "
                    "model.onnx's; INT8 engines are built from its "
                    "Q/DQ nodes",
                }
            else:
                scales = qdq_activation_scales(result.path, ctx.onnx_path)
                extra[CALIBRATION_CACHE] = write_tensorrt_cache(scales, ctx.out_dir / CALIBRATION_CACHE)
                cache = {
                    "file": CALIBRATION_CACHE,
                    "scales_from": f"{form.file} (the shipped Q/DQ file)",
                    "tensors": len(scales),
                }
        artifacts.append(
            Artifact(
                name=form.name,
                file=form.file,
                path=result.path,
                precision="int8",
                runtime=cpu_runtime_name(),
                export={
                    "format": "QDQ",
                    "form": f"{key} ({form.runtime_note})",
                    "per_channel": True,
                    "activations": form.activations,
                    "symmetric": form.symmetric,
                    "method": cfg.method,
                    "calibration_samples": int(len(images)),
                    "calibration_draw": "cell_balanced" if cfg.balanced_calibration else "first",
                    "agreement_with_fp32_on_validation": result.agreement,
                    "min_agreement": cfg.min_agreement,
                    "worst_cell_on_validation": result.worst_cell,
                    "min_cell_agreement": cfg.min_cell_agreement,
                    "on_miss": cfg.on_miss,
                    "kept_in_float": result.kept_in_float,
                    "float_nodes": result.float_nodes,
                    "tries": result.tries,
                    "shipped": {"try": result.shipped, "reason": reason},
                    "qat": cfg.qat,
                    "fine_tuned": result.fine_tuned,
                    **({"fine_tuning_decision": decision} if decision else {}),
                    **(
                        {"fine_tuning": {"steps": cfg.qat_steps, "lr": cfg.qat_lr}}
                        if result.fine_tuned
                        else {}
                    ),
                    "quantized_biases": form.quantize_bias,
                    **({"calibration_cache": cache} if cache else {}),
                },
                extra_files=extra,
            )
        )
    return artifacts


def _with_fine_tuning(
    cfg: Int8Config, ctx: ExportContext, form: Int8Form, before: Int8Result, images: np.ndarray, search: dict
) -> tuple[Int8Result, float]:
    """Fine-tune a copy of the student under simulated INT8 (:mod:`edgekd.export.qat`), export it
    like ``model.onnx`` and quantize it, its agreement measured against the original student's
    file; ship :func:`shipped_try` of the tries of both (every try of both on the card). Also
    returns the seconds the fine-tuning itself took (what the estimate is for)."""
    import time
    from dataclasses import replace

    from edgekd.export.onnx import export_onnx
    from edgekd.export.qat import quantization_aware_finetune

    final = ctx.out_dir / form.file
    with tempfile.TemporaryDirectory(dir=ctx.out_dir) as tmp:
        started = time.perf_counter()
        tuned = quantization_aware_finetune(
            ctx.student,
            ctx.train_for_epoch or (lambda epoch: ctx.calibration),
            images,
            ctx.mean,
            ctx.std,
            symmetric=form.symmetric,
            steps=cfg.qat_steps,
            lr=cfg.qat_lr,
            batch_size=QAT_BATCH,
            label=form.file,
            log=ctx.log,
        )
        took = time.perf_counter() - started
        tuned_onnx = export_onnx(
            tuned,
            Path(tmp) / "fine_tuned.onnx",
            image_size=ctx.image_size,
            opset=ctx.export.onnx.opset,
            exporter=ctx.export.onnx.exporter,
        )
        after = quantize_to_agreement(
            tuned_onnx,
            Path(tmp) / form.file,
            images,
            ctx.check.images,
            ctx.mean,
            ctx.std,
            reference_path=ctx.onnx_path,
            note="after INT8-aware fine-tuning",
            **search,
        )
        tries = before.tries + after.tries
        index = shipped_try(tries, cfg.min_agreement, cfg.min_cell_agreement)
        if index >= len(before.tries):  # the same try the fine-tuned search chose for itself
            after.path.replace(final)
            return replace(after, path=final, tries=tries, fine_tuned=True, shipped=index), took
    return replace(before, tries=tries), took
