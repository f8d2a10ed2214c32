"""Deployment targets: what a bundle is made for (``export.target``).

A TensorRT engine is built on the device from the bundle's ONNX files, by the TensorRT that
JetPack (or the x86 machine) has. Each TensorRT line parses a different ONNX: 8.x reads opsets up
to 17 and takes ReduceMean's axes only as an attribute (opset 18 moved them to an input, which
8.x's importer ignores: the squeeze-and-excitation means would average over every axis, with no
error); 10.x reads up to opset 20 and wants those axes as an initializer; 11.x builds strongly
typed networks only (INT8 from Q/DQ nodes, fp16 from an fp16-typed file). So the target fixes the
exported opset, the rules every file meant for TensorRT must pass
(:mod:`edgekd.export.tensorrt_rules`) and what ``edgekd engine`` expects to find on the device.

Sources of each row: the JetPack release notes for the TensorRT each JetPack ships (5.1.x: 8.5.2;
6.0: 8.6.2; 6.1 and 6.2: 10.3), NVIDIA's support matrix for compute capabilities and DLA cores,
onnx-tensorrt's ``docs/operators.md`` of release/8.5-GA, 8.6-GA and 10.1-GA for the opset
ceilings and operator tables, and the TensorRT 10.x -> 11.x migration guide for the removed
precision flags and calibrator. The 11.x row keeps 10.x's opset ceiling (20): 11.x documents a
higher one, and a lower ceiling than the parser's never makes a file it cannot read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekd.errors import EdgeKDError

__all__ = [
    "DeploymentTarget",
    "TARGETS",
    "DEFAULT_TARGET",
    "get_target",
    "tensorrt_line",
    "resolve_onnx_export",
    "DYNAMO_MIN_OPSET",
    "DEFAULT_OPSET",
]

DYNAMO_MIN_OPSET = 18  # torch.export's ONNX exporter writes opset 18 or newer
DEFAULT_OPSET = 18  # what an export gets when the target parses it


@dataclass(frozen=True)
class DeploymentTarget:
    """One deployment target: the TensorRT it runs and what that TensorRT's parser accepts."""

    name: str
    description: str
    tensorrt: str  # the TensorRT version (range) the target ships: "8.6.2", "10.x"
    rules: str  # the rules line of edgekd.export.tensorrt_rules: "8.5", "8.6", "10", "11"
    max_opset: int
    compute_capability: tuple[str, ...]  # SM versions the engines run on
    dla_cores: int  # most DLA cores of a module of this target (0: none)
    precisions: tuple[str, ...]
    int8_calibrator: bool  # implicit INT8 from calibration.cache (removed in TensorRT 11)
    strongly_typed: bool  # precision comes from the file's types, not builder flags

    def record(self) -> dict:
        """Plain data for the card's ``deployment.target``."""
        out = asdict(self)
        out["compute_capability"] = list(self.compute_capability)
        out["precisions"] = list(self.precisions)
        return out


_JETSON_PRECISIONS = ("fp32", "fp16", "int8")
TARGETS: dict[str, DeploymentTarget] = {
    t.name: t
    for t in (
        DeploymentTarget(
            "orin-jetpack5.1",
            "Jetson AGX Orin / Orin NX / Orin Nano on JetPack 5.1.x",
            "8.5.2",
            "8.5",
            17,
            ("8.7",),
            2,
            _JETSON_PRECISIONS,
            True,
            False,
        ),
        DeploymentTarget(
            "orin-jetpack6.0",
            "Jetson AGX Orin / Orin NX / Orin Nano on JetPack 6.0",
            "8.6.2",
            "8.6",
            17,
            ("8.7",),
            2,
            _JETSON_PRECISIONS,
            True,
            False,
        ),
        DeploymentTarget(
            "orin-jetpack6.1",
            "Jetson AGX Orin / Orin NX / Orin Nano on JetPack 6.1 or 6.2",
            "10.3",
            "10",
            20,
            ("8.7",),
            2,
            _JETSON_PRECISIONS,
            True,
            False,
        ),
        DeploymentTarget(
            "xavier-jetpack5.1",
            "Jetson AGX Xavier / Xavier NX on JetPack 5.1.x",
            "8.5.2",
            "8.5",
            17,
            ("7.2",),
            2,
            _JETSON_PRECISIONS,
            True,
            False,
        ),
        DeploymentTarget(
            "x86-tensorrt10",
            "an x86-64 machine with an NVIDIA GPU and TensorRT 10.x",
            "10.x",
            "10",
            20,
            ("7.5", "8.0", "8.6", "8.9", "9.0"),
            0,
            _JETSON_PRECISIONS,
            True,
            False,
        ),
        DeploymentTarget(
            "x86-tensorrt11",
            "an x86-64 machine with an NVIDIA GPU and TensorRT 11.x "
            "(strongly typed: fp16 from model.fp16.onnx, INT8 from model.int8.trt.onnx)",
            "11.x",
            "11",
            20,
            ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"),
            0,
            _JETSON_PRECISIONS,
            False,
            True,
        ),
    )
}
DEFAULT_TARGET = "orin-jetpack6.1"


def get_target(name: str) -> DeploymentTarget:
    """The target called ``name``; an unknown name is one line listing the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise EdgeKDError(
            f"export.target: unknown target {name!r}; choose one of: {', '.join(TARGETS)}"
        ) from None


def tensorrt_line(version: str) -> str:
    """The rules line of a TensorRT version: 8.5.2 -> "8.5", 8.6.1 -> "8.6", 10.3.0 -> "10",
    11.1 -> "11" (TensorRT-RTX 1.x builds strongly typed networks as 11.x does: "11")."""
    parts = str(version).split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except ValueError:
        raise EdgeKDError(f"TensorRT version {version!r}: expected <major>.<minor>[.<patch>]") from None
    if major < 8 or (major == 8 and minor < 5):
        raise EdgeKDError(
            f"TensorRT {version}: edgekd's engines need TensorRT 8.5 or newer (JetPack 5.1 or newer)"
        )
    if major == 8:
        return "8.5" if minor == 5 else "8.6"
    return "10" if major < 11 else "11"


def resolve_onnx_export(
    target: DeploymentTarget, *, opset: int | None, exporter: str | None
) -> tuple[int, str]:
    """The opset and exporter of ``model.onnx`` for ``target``: the recipe's where it set them
    (checked against the target), else opset 18 where the target parses it (torch.export's
    exporter) and otherwise the target's ceiling with the TorchScript exporter (which writes
    ReduceMean's axes as an attribute at opset 17)."""
    if opset is not None and opset > target.max_opset:
        raise EdgeKDError(
            f"export.onnx.opset = {opset}: the target {target.name} (TensorRT {target.tensorrt}) parses "
            f"opset {target.max_opset} at most; use opset <= {target.max_opset} or another export.target"
        )
    if opset is None:
        opset = (
            DEFAULT_OPSET
            if exporter != "torchscript" and target.max_opset >= DEFAULT_OPSET
            else min(target.max_opset, 17)
        )
    if exporter is None:
        exporter = "dynamo" if opset >= DYNAMO_MIN_OPSET else "torchscript"
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise EdgeKDError(
            f"export.onnx.exporter = 'dynamo' writes opset {DYNAMO_MIN_OPSET} or newer"
            + (
                f", and the target {target.name} (TensorRT {target.tensorrt}) parses opset "
                f"{target.max_opset} at most"
                if target.max_opset < DYNAMO_MIN_OPSET
                else ""
            )
            + "; use exporter: torchscript"
            + ("" if target.max_opset < DYNAMO_MIN_OPSET else f" or opset >= {DYNAMO_MIN_OPSET}")
        )
    return opset, exporter
