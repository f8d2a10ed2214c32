"""The INT8 float-layer search, every try: agreement with fp32 as each group of layers joins the float set.

    python benchmarks/bench_int8_search.py recipes/fashion-mnist.yaml runs/fashion-mnist/bundle/model.onnx
    python benchmarks/bench_int8_search.py recipes/quickstart.yaml runs/quickstart/bundle/model.onnx \\
        --forms tensorrt,cpu --methods minmax,percentile

The build's search (:func:`edgekd.export.int8.quantize_to_agreement`) keeps one more group of the
layers INT8 hurts most in float per try (first and last layers, squeeze-and-excitation blocks,
element-wise ops, depthwise convolutions) and stops at the first try that reaches the bounds. This
benchmark makes every try, whatever the earlier ones scored, for each form and calibration method,
and reports the cell-weighted agreement on the validation images (what the search sees) and the
agreement on the test images (what the card reports), so one can see whether a group that does not
gain predicts that the next will not either. The recipe gives the data (its validation and test
splits, the calibration draw of the build); the ONNX file is the student to quantize.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("onnx", type=Path, help="the fp32 student (a bundle's model.onnx)")
    parser.add_argument("--forms", default="tensorrt", help="comma-separated: tensorrt, cpu")
    parser.add_argument("--methods", default="minmax", help="comma-separated: minmax, percentile, entropy")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from onnxruntime.quantization import quant_pre_process

    from edgekd.data import load_data
    from edgekd.data.splits import cell_weights
    from edgekd.export.int8 import FORMS, quantize_int8, sensitive_groups
    from edgekd.export.runtime import OnnxClassifier
    from edgekd.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    cfg = recipe.export.int8
    data = load_data(recipe.data, seed=recipe.seed)
    calibration = data.train_for_epoch(0)
    if cfg.balanced_calibration:
        calibration = calibration.cell_balanced(cfg.calibration_samples)
    images = calibration.images[: cfg.calibration_samples]
    weights = cell_weights(data.val.labels, data.val.groups)

    def predict(path: Path, split) -> np.ndarray:
        return (
            OnnxClassifier(path, threads=args.threads)
            .predict_images(split.images, data.mean, data.std)
            .argmax(1)
        )

    reference_val, reference_test = predict(args.onnx, data.val), predict(args.onnx, data.test)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(args.onnx), str(prepared), skip_symbolic_shape=True)
        plan = [("nothing", [])] + sensitive_groups(prepared)
        for form_name in args.forms.split(","):
            form = FORMS[form_name]
            for method in args.methods.split(","):
                kept: list[str] = []
                for label, names in plan:
                    kept += names
                    start = time.perf_counter()
                    candidate = quantize_int8(
                        prepared,
                        Path(tmp) / "try.onnx",
                        images,
                        data.mean,
                        data.std,
                        method=method,
                        activations=form.activations,
                        symmetric=form.symmetric,
                        exclude=kept,
                        pre_process=False,
                        quantize_bias=form.quantize_bias,
                    )
                    row = {
                        "form": form_name,
                        "method": method,
                        "kept_in_float_added": label,
                        "float_nodes": len(kept),
                        "val_agreement_weighted": round(
                            float(np.average(predict(candidate, data.val) == reference_val, weights=weights)),
                            4,
                        ),
                        "test_agreement": round(
                            float(np.mean(predict(candidate, data.test) == reference_test)), 4
                        ),
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                    print(row, flush=True)
                    rows.append(row)
    path = write_result(
        f"int8_search_{recipe.name}",
        {
            "recipe": str(args.recipe),
            "onnx": args.onnx.name,
            "min_agreement": cfg.min_agreement,
            "validation_images": len(data.val),
            "test_images": len(data.test),
            "calibration_images": len(images),
            "rows": rows,
        },
    )
    for form_name in args.forms.split(","):
        for method in args.methods.split(","):
            tries = [r for r in rows if r["form"] == form_name and r["method"] == method]
            first = next((r for r in tries if r["val_agreement_weighted"] >= cfg.min_agreement), None)
            print(
                f"{form_name}/{method}: validation "
                + " -> ".join(f"{r['val_agreement_weighted']:.4f}" for r in tries)
                + (
                    f"; first reaching {cfg.min_agreement}: keeping up to {first['kept_in_float_added']} "
                    f"(test {first['test_agreement']:.4f} against {tries[0]['test_agreement']:.4f} all-INT8)"
                    if first
                    else f"; none reaches {cfg.min_agreement}"
                )
            )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
