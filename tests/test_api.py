"""Issue 14: the Python API (``from edgekd import build, bench, load_card, verify``) and the card
of the tiny recipe against the one kept from before the restructuring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgekd
from edgekd.card.gates import GATE_DEFAULTS

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_card_v0.1.0.json"
# the card of tests/tiny.yaml before issue 26's restructuring (one metrics engine, the export
# table, the registries, the pipeline split): main 2fb1bc0, 2026-12-03
FIXTURE_ISSUE_26 = Path(__file__).parent / "fixtures" / "tiny_card_v0.2.0.json"


def test_importing_edgekd_loads_nothing_heavy():
    code = (
        "import sys, edgekd; from edgekd import load_card, verify, bench; "
        "print(sorted(m for m in ('torch', 'timm', 'fairlearn', 'sklearn', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_api_builds_the_tiny_recipe_and_reads_its_bundle(tiny_build):
    # tests/conftest.py makes tiny_build with edgekd.build, the API's front door
    from edgekd import bench, load_card, verify

    assert load_card(tiny_build.bundle_dir) == json.loads((tiny_build.bundle_dir / "card.json").read_text())
    assert (
        load_card(tiny_build.bundle_dir)["models"]["student"]["metrics"]["top1"]
        == tiny_build.card["models"]["student"]["metrics"]["top1"]
    )
    assert verify(tiny_build.bundle_dir) == []
    assert verify(tiny_build.run_dir / "tiny-0.1.0.tar.gz") == []
    result = bench(tiny_build.bundle_dir, batch_sizes="1", warmup=1, iterations=3)
    assert result["schema"] == "edgekd.bench/v1" and result["artifact"]["file"] == "model.onnx"


def test_api_bench_is_a_function_whatever_was_imported_before():
    # issue 26: no callable module; edgekd.bench is a plain function, the package of the same
    # name is imported by module path
    code = (
        "import sys, types; from edgekd.bench.runner import run_bench; "
        "import edgekd.bench.card_update; from edgekd.bench import runner; "
        "import edgekd; from edgekd import bench; "
        "assert type(bench) is types.FunctionType and edgekd.bench is bench, bench; "
        "assert runner.run_bench is run_bench and not callable(sys.modules['edgekd.bench']); "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_api_errors_are_edgekd_errors(tmp_path):
    with pytest.raises(edgekd.EdgeKDError, match="no card.json; not an edgekd bundle"):
        edgekd.load_card(tmp_path)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgekd.nope  # noqa: B018


def _key_paths(node, prefix=""):
    if isinstance(node, dict):
        return {p for k, v in node.items() for p in _key_paths(v, f"{prefix}/{k}")} | {prefix}
    return {prefix}


def _newcomer_keys(card: dict) -> set[str]:
    """The keys the newcomer's card added: its license, each model's worst (class, group) cell,
    the classes that changed by at least card.min_effect, what each compression step did to each
    (class, group) cell, and where each exported artifact agrees least with the student (its
    worst cell and group, its group that lost most accuracy)."""
    return {
        p
        for p in _key_paths(card)
        if p == "/license"
        or "/metrics/worst_cell" in p
        or p.startswith("/compression_by_group")
        or "/vs_student/worst_" in p
        or (
            p.startswith("/significance/")
            and p.rsplit("/", 1)[-1]
            in ("min_effect", "changed_classes", "share_changed", "recall_change", "changed")
        )
    }


def test_tiny_card_has_the_same_keys_and_provenance_as_before_the_restructuring(tiny_build):
    """The card of tests/tiny.yaml kept from before issue 14 (edgekd 0.1.0, 2026-11-27): the same
    keys everywhere (plus the keys named below), the same stages, classes and gates. Metric values
    depend on the CPU's kernels, so they are compared only on the machine that made the fixture
    (the note of issue 14 records they were equal to the last digit there). The recipe hash is
    not compared: the resolved recipe gained keys since (export.int8.forms and min_agreement,
    issue 17)."""
    before = json.loads(FIXTURE.read_text())
    after = tiny_build.card
    # Issue 15 added, per torch model, the validation score that chose its epoch, and the
    # debias section's reweigh switch (off); issue 16 each model's per-epoch history, its
    # training augmentation (off), precision and label smoothing, what its weights started from,
    # the training-curves plot, and the support threshold with the cells under it; nothing else.
    added = (
        {
            f"/models/{name}/training/{key}"
            for name in ("teacher", "baseline", "student")
            for key in (
                "selected_by",
                "best_val_cell_balanced_accuracy",
                "history",
                "augment",
                "augment/enabled",
                "precision",
                "label_smoothing",
            )
        }
        | {
            f"/models/{name}/{key}"
            for name in ("teacher", "baseline", "student")
            for key in ("weights", "weights/source")
        }
        | {"/debias/reweigh"}
        | {"/data/min_support", "/data/small_cells", "/data/small_groups"}
    )  # issue 16, part 5
    # issue 25: the deployment target and the TensorRT checks of the files meant for it
    added |= {p for p in _key_paths(after) if p.startswith("/deployment")}
    assert {"/deployment/target/name", "/deployment/rules/model.onnx/passed"} <= added
    # the newcomer's card: its license, each model's worst (class, group) cell, and the classes
    # that changed by at least card.min_effect
    added |= _newcomer_keys(after)
    assert "/models/student/metrics/worst_cell/recall" in added
    assert {"/compression_by_group/steps", "/compression_by_group/min_effect"} <= added
    assert _key_paths(after) - _key_paths(before) == added
    assert _key_paths(before) - _key_paths(after) == set()
    assert after["debias"] == {**before["debias"], "reweigh": False}
    assert after["plots"] == [*before["plots"], "plots/training_curves.png", "plots/compression_by_group.png"]
    for key in ("schema", "name", "version", "task", "distillation", "skipped_artifacts"):
        assert after[key] == before[key], key
    for key in ("seed", "data"):
        assert after["provenance"][key] == before["provenance"][key], key
    # the stage keys changed with issue 15's model keys (select_by, zero_head), not their names
    assert list(after["provenance"]["stage_keys"]) == list(before["provenance"]["stage_keys"])
    tensorrt = {"tensorrt_rules", "tensorrt_parse"}  # issue 25: gates of the TensorRT checks
    assert [g["name"] for g in after["gates"] if g["name"] not in tensorrt | set(GATE_DEFAULTS)] == [
        g["name"] for g in before["gates"]
    ]
    # the worst-place gates, on by default since, on the exported file
    assert [(g["name"], g["artifact"]) for g in after["gates"] if g["name"] in GATE_DEFAULTS] == [
        (name, "onnx") for name in GATE_DEFAULTS
    ]


def test_tiny_card_is_the_one_from_before_issue_26_key_by_key(tiny_build):
    """Issue 26 changed where things are done, not what they give: the same keys everywhere, the
    same models, classes, groups, gates and stage names, and (on the machine that made the
    fixture, where the kernels are the same) the same numbers."""
    before = json.loads(FIXTURE_ISSUE_26.read_text())
    after = tiny_build.card

    def keys(card):  # TensorRT-RTX's parse is there only where the trt-check extra is installed
        return {p for p in _key_paths(card) if not p.startswith("/deployment/parser")}

    assert keys(after) - _newcomer_keys(after) == keys(before)
    assert "/models/onnx/metrics/worst_cell/recall" in _newcomer_keys(after)
    assert list(after["models"]) == list(before["models"])
    assert [
        (g["name"], g["artifact"])
        for g in after["gates"]
        if g["name"] != "tensorrt_parse" and g["name"] not in GATE_DEFAULTS
    ] == [(g["name"], g["artifact"]) for g in before["gates"] if g["name"] != "tensorrt_parse"]
    for key in ("schema", "name", "version", "task", "distillation", "debias"):
        assert after[key] == before[key], key
    assert {k: after["deployment"][k] for k in ("target", "rules", "onnx")} == {
        k: before["deployment"][k] for k in ("target", "rules", "onnx")
    }
    assert after["data"]["groups"] == before["data"]["groups"]
