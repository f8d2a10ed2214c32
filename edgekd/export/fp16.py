"""``model.fp16.onnx``: weights and compute in float16, inputs and outputs kept float32.

Keeping fp32 I/O means the device feeds the same normalised float32 tensor to every artifact;
Cast nodes at the edges convert. Uses onnxruntime's converter
(``onnxruntime.transformers.float16.convert_float_to_float16``). On a CPU provider fp16 runs
through casts and is slower than fp32; it is the precision for GPUs and Jetsons.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.config import Section
from edgekd.export.artifact import Artifact, ExportContext
from edgekd.export.files import FP16_ONNX
from edgekd.export.runtime import cpu_runtime_name
from edgekd.files import write_atomic

__all__ = ["Fp16Config", "convert_fp16", "export_fp16"]


class Fp16Config(Section):
    """``export.fp16``: float16 weights and compute, float32 inputs and outputs."""

    enabled: bool = False


def convert_fp16(onnx_path: Path, out_path: Path) -> Path:
    """Write a float16 copy of ``onnx_path`` with float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    write_atomic(Path(out_path), model.SerializeToString())
    return Path(out_path)


def export_fp16(cfg: Fp16Config, ctx: ExportContext) -> Artifact:
    """The ``export.fp16`` row of :mod:`edgekd.export.formats`."""
    path = convert_fp16(ctx.onnx_path, ctx.out_dir / FP16_ONNX)
    ctx.log(f"export: {path.name} (FP16, fp32 inputs and outputs)")
    return Artifact(
        name="onnx_fp16",
        file=path.name,
        path=path,
        precision="fp16",
        runtime=cpu_runtime_name(),
        export={"io": "float32"},
    )
