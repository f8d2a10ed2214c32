"""The quickstart sweep point whose INT8 file collapsed (KD alpha 0.2, T 1, no adversary: 0.19 of
its test predictions kept, issue 17), rebuilt from its seed with today's quickstart (zeroed
classifier head, reweighing, cell-balanced calibration): both INT8 forms keep at least 0.97 of
the student's test predictions (measured 0.994 and 0.980 on 2026-11-27). About 6 minutes on 2
cores (a B3 teacher and a B0 student at 48 px), so it is marked slow (``make test-all``)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_the_collapsed_quickstart_student_keeps_its_predictions_in_int8(tmp_path):
    from edgekd.pipeline import build

    result = build(ROOT / "recipes" / "quickstart.yaml", out=tmp_path, log=lambda m: None,
                   overrides=("distill.alpha=0.2", "distill.temperature=1", "debias.method=none",
                              "export.tensorrt.enabled=false",
                              "export.onnx.exporter=torchscript"))
    models = result.card["models"]
    for name in ("onnx_int8", "onnx_int8_trt"):
        assert models[name]["vs_student"]["prediction_agreement"] >= 0.97, name
        assert models[name]["export"]["calibration_draw"] == "cell_balanced"
