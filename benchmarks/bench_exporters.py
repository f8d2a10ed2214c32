"""torch's two ONNX exporters on a built student: TorchScript (deprecated) against dynamo.

For the distilled student of a finished build (``RUN/stages/student/best.pt`` and the bundle's
recipe and eval set), export with each exporter, run both files through onnxruntime on the test
images and print, per exporter: export seconds, argmax agreement with torch, max |logit
difference| from torch, and the ratios dynamo / TorchScript. Both run the same opset (18, the
lowest the dynamo exporter writes). Run after a build:

    python benchmarks/bench_exporters.py runs/quickstart
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _results import write_result

from edgekd.bundle.eval_set import read_eval_set
from edgekd.card.table import format_table
from edgekd.export.runtime import OnnxClassifier
from edgekd.files import read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a build's run folder, e.g. runs/quickstart")
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args()

    import torch

    from edgekd.export.onnx import export_onnx
    from edgekd.models import create_model
    from edgekd.models.tensors import predict_logits
    from edgekd.recipe import load_recipe

    bundle = args.run / "bundle"
    recipe = load_recipe(bundle / "recipe.yaml")
    preprocess = read_json(bundle / "preprocess.json")
    images, _, _ = read_eval_set(bundle)
    mean, std = preprocess["mean"], preprocess["std"]
    model = create_model(recipe.student, len(preprocess["class_names"]), key="student", load=False)
    state = torch.load(args.run / "stages/student/best.pt", map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state)
    model.eval()
    reference = predict_logits(model, images, mean, std)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for exporter in ("torchscript", "dynamo"):
            path = Path(tmp) / f"{exporter}.onnx"
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                export_onnx(model, path, image_size=images.shape[1], opset=args.opset, exporter=exporter)
            seconds = time.perf_counter() - start
            logits = OnnxClassifier(path).predict_images(images, mean, std)
            rows.append(
                {
                    "exporter": exporter,
                    "export_s": seconds,
                    "agreement": float(np.mean(logits.argmax(1) == reference.argmax(1))),
                    "max_abs_diff": f"{float(np.abs(logits - reference).max()):.2e}",
                    "size_mb": path.stat().st_size / 1e6,
                }
            )
    print(f"{args.run}: {recipe.student.arch}, {len(images)} test images, opset {args.opset}")
    print(
        format_table(
            rows,
            {
                "exporter": "exporter",
                "export_s": "export s",
                "agreement": "agreement",
                "max_abs_diff": "max |diff|",
                "size_mb": "size MB",
            },
        )
    )
    ts, dy = rows
    print(
        f"dynamo / torchscript: export time x{dy['export_s'] / ts['export_s']:.2f}, agreement "
        f"{dy['agreement']:.4f} vs {ts['agreement']:.4f}"
    )
    path = write_result(
        "exporters",
        {
            "run": args.run.name,
            "arch": recipe.student.arch,
            "test_images": len(images),
            "opset": args.opset,
            "rows": [
                {**row, "export_s": round(row["export_s"], 3), "size_mb": round(row["size_mb"], 2)}
                for row in rows
            ],
            "dynamo_vs_torchscript_export_time": round(dy["export_s"] / ts["export_s"], 2),
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
