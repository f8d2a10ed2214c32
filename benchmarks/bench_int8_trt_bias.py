"""The TensorRT INT8 form with int32 biases (onnxruntime's default) against float biases.

TensorRT's ONNX parser takes DequantizeLinear only on int8 inputs, so the int32 bias DQ nodes that
onnxruntime's ``quantize_static`` writes by default make ``model.int8.trt.onnx`` unparseable.
edgekd keeps the biases float in that form (``QuantizeBias: False``). For each finished build
given (a run folder: a quickstart build or a sweep point), this quantizes the build's own
``model.onnx`` both ways, on the same cell-balanced calibration images and with the same search
for layers kept in float as the build, and prints per build and variant: the agreement with fp32
on the validation images (cell-weighted, what the search bounds), the test agreement with
``model.onnx``, the int32 DequantizeLinear count, the TensorRT 10.x rules result and whether
TensorRT-RTX parses and builds the file; then the change in test agreement (float - int32).

    python benchmarks/bench_int8_trt_bias.py runs/quickstart/sweep/*/
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgekd.card.table import format_table

VARIANTS = {"int32 biases (before)": True, "float biases (after)": False}


def _int32_dq(path: Path) -> int:
    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    return sum(
        1
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT32
    )


def measure(run: Path, tmp: Path) -> list[dict]:
    from dataclasses import replace

    from edgekd.data import load_data
    from edgekd.data.splits import cell_weights
    from edgekd.export.int8 import FORMS, quantize_to_agreement
    from edgekd.export.runtime import OnnxClassifier
    from edgekd.export.targets import get_target
    from edgekd.export.tensorrt_check import check_for_tensorrt, proxy_module
    from edgekd.recipe import load_recipe

    recipe = load_recipe(run / "bundle" / "recipe.yaml")
    data = load_data(recipe.data, seed=recipe.seed)
    cfg = recipe.export.int8
    samples = cfg.calibration_samples
    calibration = data.train_for_epoch(0).cell_balanced(samples).images[:samples]
    source = run / "stages" / "export" / "model.onnx"
    fp32 = OnnxClassifier(source).predict_images(data.test.images, data.mean, data.std).argmax(1)
    rows = []
    for label, quantize_bias in VARIANTS.items():
        form = replace(FORMS["tensorrt"], quantize_bias=quantize_bias)
        out = tmp / f"{run.name}-{quantize_bias}" / form.file
        out.parent.mkdir(parents=True)
        result = quantize_to_agreement(
            source,
            out,
            calibration,
            data.val.images,
            data.mean,
            data.std,
            form=form,
            method=cfg.method,
            min_agreement=cfg.min_agreement,
            check_weights=cell_weights(data.val.labels, data.val.groups),
        )
        test = OnnxClassifier(out).predict_images(data.test.images, data.mean, data.std).argmax(1)
        checked = check_for_tensorrt(
            {form.file: out},
            get_target(recipe.export.target),
            image_size=data.image_size,
            proxy=proxy_module(),
        )
        parsed = checked.get("parser", {}).get("files", {}).get(form.file, {})
        rows.append(
            {
                "run": run.name,
                "variant": label,
                "validation_agreement": round(result.agreement, 4),
                "kept_in_float": ", ".join(result.kept_in_float) or "nothing",
                "test_agreement": round(float((test == fp32).mean()), 4),
                "int32_dq": _int32_dq(out),
                "rules": "pass" if checked["rules"][form.file]["passed"] else "FAIL",
                "tensorrt_rtx": ("-" if not parsed else "built" if parsed["built"] else "cannot parse"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished builds' run folders")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            rows += measure(run, Path(tmp))
            print(f"{run}: measured", flush=True)
    headers = {k: k.replace("_", " ") for k in rows[0]}
    print(format_table(rows, headers))
    changes = []
    for run in dict.fromkeys(r["run"] for r in rows):
        before, after = (next(r for r in rows if r["run"] == run and r["variant"] == v) for v in VARIANTS)
        changes.append(round(after["test_agreement"] - before["test_agreement"], 4))
        print(
            f"{run}: test agreement {before['test_agreement']:.4f} -> {after['test_agreement']:.4f} "
            f"({changes[-1]:+.4f})"
        )
    print(
        f"change in test agreement, float - int32 biases: mean {np.mean(changes):+.4f}, "
        f"min {min(changes):+.4f}, max {max(changes):+.4f} over {len(changes)} builds"
    )
    from _results import write_result

    print(f"result: {write_result('int8_trt_bias', {'rows': rows, 'test_agreement_change': changes})}")


if __name__ == "__main__":
    main()
