"""INT8's bound is a release gate (``int8_min_agreement``), the search ships the best try it saw
and says why, and fine-tuning runs by default only when its estimated time fits the budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.card.gates import INT8_CELL_GATE, INT8_GATE, failed_gates, int8_gates, warned_gates
from edgekd.cli import main
from edgekd.export.int8 import decide_fine_tuning, reaches, shipped_reason, shipped_try
from edgekd.export.qat import FineTuningCost, format_minutes

EDGES = ["first and last layers"]
SE = EDGES + ["squeeze-and-excitation blocks"]


def _try(agreement: float, kept: list[str], nodes: int, note: str = "", cell: float | None = None) -> dict:
    return {
        "kept_in_float": kept,
        "float_nodes": nodes,
        "agreement": agreement,
        **(
            {"worst_cell": {"class": "square", "group": "cool", "agreement": cell, "images": 10}}
            if cell is not None
            else {}
        ),
        **({"note": note} if note else {}),
    }


# ---------------------------------------------------------------- which try ships, and why
def test_a_middle_try_that_is_best_ships_when_none_reaches_the_bound():
    tries = [
        _try(0.8912, [], 0),
        _try(0.9169, EDGES, 3),
        _try(0.9011, SE, 12),
        _try(0.9050, [], 0, "after INT8-aware fine-tuning"),
    ]
    assert shipped_try(tries, 0.97) == 1
    assert shipped_reason(tries, 1, 0.97) == (
        "0.9169 keeping first and last layers in float, the best of 4 tries; below min_agreement 0.97"
    )
    # a tie on agreement goes to the earlier (cheaper) try
    assert shipped_try([_try(0.9, [], 0), _try(0.9, EDGES, 3)], 0.97) == 0


def test_the_cheapest_try_that_reaches_the_bound_ships():
    tries = [_try(0.95, [], 0), _try(0.975, EDGES, 3), _try(0.99, SE, 12)]
    assert shipped_try(tries, 0.97) == 1  # fewest layers in float, not the highest agreement
    assert shipped_reason(tries, 1, 0.97) == (
        "0.9750 keeping first and last layers in float, the "
        "cheapest (fewest layers in float) of the 2 of 3 tries "
        "that reach min_agreement 0.97"
    )
    # the same cost after fine-tuning (qat: on): the one that agrees more
    tuned = [_try(0.975, [], 0), _try(0.985, [], 0, "after INT8-aware fine-tuning")]
    assert shipped_try(tuned, 0.97) == 1
    assert shipped_reason(tuned, 1, 0.97).startswith(
        "0.9850 keeping nothing in float after INT8-aware fine-tuning, the cheapest"
    )
    assert (
        shipped_reason([_try(0.98, [], 0)], 0, 0.97)
        == "0.9800 keeping nothing in float, the one of 1 try that reaches min_agreement 0.97"
    )


def test_the_choice_over_two_searches_is_each_searchs_own_when_it_falls_there():
    """export_int8 ships the fine-tuned search's own file when the choice over all tries falls
    among its tries: that is only right if the choice is the same on the sub-list."""
    before = [_try(0.80, [], 0), _try(0.86, EDGES, 3)]
    after = [_try(0.92, [], 0, "t"), _try(0.95, EDGES, 3, "t"), _try(0.93, SE, 12, "t")]
    both = shipped_try(before + after, 0.97)
    assert both == len(before) + shipped_try(after, 0.97) == 3


# ------------------------------------------------------- the cell bound: min_cell_agreement
def test_a_try_whose_mean_passes_but_whose_worst_cell_fails_does_not_reach_the_bounds():
    # all INT8: weighted agreement 0.985 (passes 0.97) but square / cool at 0.7 (misses 0.8);
    # edges in float: 0.975 with the cell at 0.9: the cheapest that reaches both ships
    tries = [_try(0.985, [], 0, cell=0.7), _try(0.975, EDGES, 3, cell=0.9), _try(0.99, SE, 12, cell=1.0)]
    assert not reaches(tries[0], 0.97, 0.8) and reaches(tries[0], 0.97)  # no cell bound: it would
    assert shipped_try(tries, 0.97) == 0
    assert shipped_try(tries, 0.97, 0.8) == 1
    assert shipped_reason(tries, 1, 0.97, 0.8) == (
        "0.9750 (worst cell square / cool 0.9000) keeping first and last layers in float, the "
        "cheapest (fewest layers in float) of the 2 of 3 tries that reach min_agreement 0.97 and "
        "min_cell_agreement 0.8"
    )
    # none reaches: the smallest shortfall ships, max(0.97 - agreement, 0.8 - cell):
    # 0.1 (cell 0.7), 0.04 (agreement 0.93), 0.05 (cell 0.75): the middle one, not the highest mean
    missing = [_try(0.985, [], 0, cell=0.7), _try(0.93, EDGES, 3, cell=0.9), _try(0.98, SE, 12, cell=0.75)]
    assert shipped_try(missing, 0.97, 0.8) == 1
    assert shipped_reason(missing, 1, 0.97, 0.8) == (
        "0.9300 (worst cell square / cool 0.9000) keeping first and last layers in float, the best "
        "of 3 tries; below min_agreement 0.97"
    )
    assert shipped_reason(missing, 0, 0.97, 0.8).endswith("; below min_cell_agreement 0.8")
    # tries from before the cell bound (no worst_cell) are judged on the mean alone
    assert shipped_try([_try(0.95, [], 0), _try(0.975, EDGES, 3)], 0.97, 0.8) == 1


def test_the_cell_bound_is_a_gate_that_respects_on_miss():
    def card(on_miss: str, cell: float | None) -> dict:
        export = {
            "agreement_with_fp32_on_validation": 0.985,
            "min_agreement": 0.97,
            "min_cell_agreement": 0.8,
            "on_miss": on_miss,
            "worst_cell_on_validation": None
            if cell is None
            else {"class": "square", "group": "cool", "agreement": cell, "images": 10},
            "shipped": {"try": 0, "reason": "why"},
        }
        return {"models": {"onnx_int8": {"kind": "onnx", "metrics": {}, "export": export}}}

    mean, cell = int8_gates(card("fail", 0.7))
    assert (mean["name"], mean["passed"]) == (INT8_GATE, True)
    assert (cell["name"], cell["value"], cell["threshold"], cell["passed"]) == (
        INT8_CELL_GATE,
        0.7,
        0.8,
        False,
    )
    assert cell["detail"] == "shipped: why"
    assert failed_gates({"gates": [mean, cell]}) == [cell]
    warned = int8_gates(card("warn", 0.7))[1]
    assert warned["on_miss"] == "warn" and warned_gates({"gates": [warned]}) == [warned]
    assert failed_gates({"gates": [warned]}) == []
    assert int8_gates(card("fail", 0.8))[1]["passed"]  # the bound itself passes
    # no cell with the images to measure (a tiny validation split): nothing to bound, as in the search
    assert [g["name"] for g in int8_gates(card("fail", None))] == [INT8_GATE]


def test_min_cell_agreement_out_of_range_is_one_line():
    result = CliRunner().invoke(
        main, ["build", str(Path(__file__).parent / "tiny.yaml"), "--set", "export.int8.min_cell_agreement=2"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "export.int8.min_cell_agreement" in lines[0], result.output
    assert "1" in lines[0] and "Traceback" not in result.output


# ------------------------------------------------------------------- the fine-tuning budget
def test_fine_tuning_estimate_and_budget_decision_hand_worked():
    cost = FineTuningCost(setup_seconds=1.0, refresh_seconds=2.0, step_seconds=0.5)
    # 1 s + 1200 x 0.5 s + ceil(1200 / 50) = 24 ranges x 2 s = 649 s a form
    assert cost.minutes(steps=1200, refresh_every=50) == pytest.approx(649 / 60)
    assert cost.minutes(steps=1201, refresh_every=50) == pytest.approx((1 + 600.5 + 25 * 2) / 60)
    minutes = cost.minutes(steps=1200) * 2  # two forms: 21.63 min
    run, line = decide_fine_tuning("auto", minutes=minutes, budget_minutes=10, steps=1200, forms=2)
    assert not run
    assert line == (
        "INT8 fine-tuning: about 22 min for 1200 steps x 2 forms, above "
        "export.int8.qat_budget_minutes 10: skipped (set export.int8.qat=on to run it)"
    )
    run, line = decide_fine_tuning("auto", minutes=minutes, budget_minutes=30, steps=1200, forms=2)
    assert run and line.endswith("within export.int8.qat_budget_minutes 30: running")
    run, line = decide_fine_tuning("on", minutes=minutes, budget_minutes=0, steps=1200, forms=1)
    assert run and line == (
        "INT8 fine-tuning: about 22 min for 1200 steps x 1 form (export.int8.qat: on): running"
    )
    # the bound itself fits
    assert decide_fine_tuning("auto", minutes=10.0, budget_minutes=10, steps=1, forms=1)[0]
    assert [format_minutes(s) for s in (40.4, 65, 599.6, 649)] == ["40 s", "1 min 05 s", "10 min", "11 min"]


# ------------------------------------------------------ a real build that misses its bound
# A student that learned something (the tiny recipe's student predicts one class, which
# any INT8 file reproduces), and calibration on one image: every other image's activations
# outside that image's ranges are clipped, so INT8 agrees with fp32 on about half of them.
MISSES = (
    "--set",
    "teacher.epochs=1",
    "--set",
    "student.epochs=1",
    "--set",
    "student.lr=0.02",
    "--set",
    "distill.alpha=0",
    "--set",
    "export.int8.enabled=true",
    "--set",
    "export.int8.calibration_samples=1",
    "--set",
    "export.int8.min_agreement=0.9999",
)


# this student's INT8 files agree with it on about half the images: the card's worst-place gates
# (on by default) fail them too; the warn build turns them off to see on_miss alone
WORST_PLACE_GATES_OFF = (
    "--set",
    "card.gates.min_cell_agreement_vs_student=null",
    "--set",
    "card.gates.min_group_agreement_vs_student=null",
    "--set",
    "card.gates.max_group_recall_drop_vs_student=null",
)


@pytest.fixture(scope="module")
def missed(tmp_path_factory, tiny_recipe):
    """The same build twice: on_miss fail (the default) with fine-tuning over budget, then
    on_miss warn with a budget that lets 4 fine-tuning steps run (the training stages reused)."""
    out = tmp_path_factory.mktemp("int8gate")
    runner = CliRunner()
    failing = runner.invoke(
        main,
        ["build", str(tiny_recipe), "--out", str(out), *MISSES, "--set", "export.int8.qat_budget_minutes=0"],
    )
    bundle = out / "tiny" / "bundle"
    failing_card = json.loads((bundle / "card.json").read_text())
    failing_check = runner.invoke(main, ["card", str(bundle), "--check"])
    failing_md = (bundle / "card.md").read_text()
    warning = runner.invoke(
        main,
        [
            "build",
            str(tiny_recipe),
            "--out",
            str(out),
            *MISSES,
            "--set",
            "export.int8.on_miss=warn",
            *WORST_PLACE_GATES_OFF,
            "--set",
            "export.int8.qat_budget_minutes=60",
            "--set",
            "export.int8.qat_steps=4",
        ],
    )
    return {
        "fail": (failing, failing_card, failing_check, failing_md),
        "warn": (
            warning,
            json.loads((bundle / "card.json").read_text()),
            runner.invoke(main, ["card", str(bundle), "--check"]),
            (bundle / "card.md").read_text(),
        ),
    }


def _int8_entries(card: dict) -> dict:
    return {name: card["models"][name]["export"] for name in ("onnx_int8", "onnx_int8_trt")}


def test_a_missed_bound_fails_the_build_and_the_card_check(missed):
    build, card, check, md = missed["fail"]
    assert build.exit_code == 1, build.output
    for name, export in _int8_entries(card).items():
        assert export["agreement_with_fp32_on_validation"] < 0.9999 and export["on_miss"] == "fail"
        assert f"gate failed: {INT8_GATE} on {name}: " in build.output
        assert f"gate failed: {INT8_GATE} on {name}: " in check.output
    assert check.exit_code == 1
    # fine-tuning was estimated, over the budget of 0 minutes, and skipped, saying how to run it
    assert (
        "above export.int8.qat_budget_minutes 0: skipped (set export.int8.qat=on to run it)" in build.output
    )
    assert "INT8-aware fine-tuning (" not in build.output
    assert f"-> gate {INT8_GATE} fails" in build.output
    assert "| int8_min_agreement | onnx_int8 |" in md and "**FAIL**" in md
    gates = [g for g in card["gates"] if g["name"] == INT8_GATE]
    assert len(gates) == 2 and not any(g["passed"] for g in gates)
    assert [g for g in card["gates"] if g["name"] in (INT8_GATE, INT8_CELL_GATE)] == int8_gates(card)
    assert {(g["name"], g["artifact"]) for g in failed_gates(card)} >= {
        (INT8_GATE, "onnx_int8"),
        (INT8_GATE, "onnx_int8_trt"),
    }


def test_the_shipped_try_is_the_best_and_the_card_says_why(missed):
    for build, card, _, _ in missed.values():
        for export in _int8_entries(card).values():
            tries, shipped = export["tries"], export["shipped"]
            bounds = export["min_agreement"], export["min_cell_agreement"]
            assert shipped["try"] == shipped_try(tries, *bounds)
            best = tries[shipped["try"]]
            # none reaches min_agreement 0.9999: the one closest to the bounds ships
            shortfall = [
                max(bounds[0] - t["agreement"], bounds[1] - t["worst_cell"]["agreement"]) for t in tries
            ]
            assert shortfall[shipped["try"]] == min(shortfall)
            assert export["worst_cell_on_validation"] == best["worst_cell"]
            assert export["agreement_with_fp32_on_validation"] == best["agreement"]
            assert export["kept_in_float"] == best["kept_in_float"]
            assert export["fine_tuned"] == ("note" in best)
            assert shipped["reason"] == shipped_reason(tries, shipped["try"], *bounds)
            assert (
                f"{export['activations']}, minmax calibration): shipped: {shipped['reason']}" in build.output
            )


def test_on_miss_warn_passes_with_the_warning_and_fine_tunes_within_budget(missed):
    build, card, check, md = missed["warn"]
    assert build.exit_code == 0, build.output
    assert check.exit_code == 0, check.output
    for name, export in _int8_entries(card).items():
        assert export["on_miss"] == "warn"
        line = f"gate warning (on_miss: warn): {INT8_GATE} on {name}: "
        assert line in build.output and line in check.output
        # fine-tuning ran: its tries are on the card after the student's own
        assert any(t.get("note") == "after INT8-aware fine-tuning" for t in export["tries"])
        assert export["fine_tuning_decision"] == {
            "forms": ["model.int8.onnx", "model.int8.trt.onnx"],
            "ran": True,
            "budget_minutes": 60.0,
            "by": "estimate within export.int8.qat_budget_minutes",
        }
    warned = len(warned_gates(card))
    assert warned >= 2 and f"all gates pass but {warned} that only warn, all checksums match" in check.output
    assert f"-> gate {INT8_GATE} only warns (export.int8.on_miss: warn)" in build.output
    assert "within export.int8.qat_budget_minutes 60: running" in build.output
    assert "INT8-aware fine-tuning (model.int8.trt.onnx) step 4/4: KL " in build.output
    assert "INT8 fine-tuning took " in build.output and "(estimated " in build.output
    assert not [g for g in failed_gates(card) if g["name"] == INT8_GATE]
    assert {g["artifact"] for g in warned_gates(card)} == {"onnx_int8", "onnx_int8_trt"}
    assert [g for g in card["gates"] if g["name"] in (INT8_GATE, INT8_CELL_GATE)] == int8_gates(card)
    assert "| int8_min_agreement | onnx_int8 |" in md and "| warn |" in md


def test_an_old_card_without_the_int8_gate_still_checks(tmp_path):
    from edgekd.card.schema import check_card

    old = json.loads((Path(__file__).parent / "fixtures" / "tiny_card_v0.2.0.json").read_text())
    assert check_card(old) is old
    assert int8_gates(old) == []
