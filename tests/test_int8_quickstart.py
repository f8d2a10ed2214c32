"""The quickstart sweep point whose INT8 file collapsed (KD alpha 0.2, T 1, no adversary: 0.19 of
its test predictions kept, issue 17), rebuilt from its seed with today's quickstart (zeroed
classifier head, reweighing, cell-balanced calibration): both INT8 forms keep at least 0.97 of
the student's test predictions, and the TensorRT form keeps float biases and passes the
target's parser rules. About 6 minutes on 2
cores (a B3 teacher and a B0 student at 48 px), so it is marked slow (``make test-all``)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the whole quickstart build
def test_the_collapsed_quickstart_student_keeps_its_predictions_in_int8(tmp_path):
    from edgekd.pipeline import build

    result = build(
        ROOT / "recipes" / "quickstart.yaml",
        out=tmp_path,
        log=lambda m: None,
        overrides=(
            "distill.alpha=0.2",
            "distill.temperature=1",
            "debias.method=none",
            "export.tensorrt.enabled=false",
            "export.onnx.exporter=torchscript",
        ),
    )
    models = result.card["models"]
    for name in ("onnx_int8", "onnx_int8_trt"):
        assert models[name]["vs_student"]["prediction_agreement"] >= 0.97, name
        assert models[name]["export"]["calibration_draw"] == "cell_balanced"
    # the TensorRT form is TensorRT-legal: float biases, and it passes the target's rules
    assert models["onnx_int8_trt"]["export"]["quantized_biases"] is False
    rules = result.card["deployment"]["rules"]
    assert rules["model.int8.trt.onnx"]["passed"] and rules["model.onnx"]["passed"]
