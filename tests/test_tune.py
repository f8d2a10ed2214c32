"""``edgekd tune`` and ``--jobs``: space and objective syntax, the front against the trials table,
a killed study that resumes, two workers on one storage, and a parallel sweep's rows."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.jobs import worker_env
from edgekd.tune import OBJECTIVES, Dimension, dominates, parse_objectives, parse_space

# small and quick: one epoch each, a few bootstrap resamples
FAST = ("--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "card.bootstrap_resamples=50")
WORKTREE = Path(__file__).resolve().parents[1]


def test_parse_space_ranges_and_lists():
    dims = parse_space(
        [
            "distill.alpha=0.1:0.9",
            "distill.temperature=1:8:log",
            "student.epochs=1:3",
            "debias.method=none,adversarial",
        ]
    )
    assert dims == [
        Dimension("distill.alpha", 0.1, 0.9),
        Dimension("distill.temperature", 1, 8, log=True),
        Dimension("student.epochs", 1, 3),
        Dimension("debias.method", choices=("none", "adversarial")),
    ]
    assert dims[1].spec() == "distill.temperature=1:8:log"


@pytest.mark.parametrize(
    "items, needle",
    [
        ([], "--space: give at least one"),
        (["distill.alpha"], "expected KEY=LOW:HIGH"),
        (["distill.alpha=0.9:0.1"], "LOW 0.9 must be below HIGH 0.1"),
        (["distill.alpha=0:1:log"], "a log range needs LOW above 0"),
        (["distill.alpha=0:1:cube"], "expected KEY=LOW:HIGH, KEY=LOW:HIGH:log"),
        (["distill.alpha=low:1"], "'low' is not a number"),
        (["distill.method=kd,,rkd"], "empty value"),
        (["distill.method=kd,kd"], "listed twice"),
        (["a=1:2", "a=2:3"], "given twice"),
    ],
)
def test_parse_space_errors_are_one_line(items, needle):
    with pytest.raises(EdgeKDError, match=needle) as err:
        parse_space(items)
    assert "\n" not in str(err.value)


def test_objectives_by_name_and_direction():
    chosen = parse_objectives(["top1:max", "mean_abs_disparity", "size_bytes:max"])
    assert [(o.name, d) for o, d in chosen] == [
        ("top1", "maximize"),
        ("mean_abs_disparity", "minimize"),
        ("size_bytes", "maximize"),
    ]
    assert [(o.name, d) for o, d in parse_objectives([])] == [
        ("top1", "maximize"),
        ("mean_abs_disparity", "minimize"),
    ]
    with pytest.raises(EdgeKDError, match="unknown objective 'top5'; choose one of: .*int8_agreement"):
        parse_objectives(["top5:max"])
    with pytest.raises(EdgeKDError, match="the direction is max or min"):
        parse_objectives(["top1:up"])
    card = {
        "models": {
            "student": {
                "metrics": {"top1": 0.75, "mean_abs_disparity": 0.125, "worst_cell": {"recall": 0.5}}
            },
            "onnx": {"size_bytes": 1234},
            "onnx_int8": {
                "vs_student": {
                    "prediction_agreement": 0.97,
                    "worst_cell_agreement": {"agreement": 0.875},
                    "worst_group_agreement": {"agreement": 0.9375},
                }
            },
        },
        "bench": {
            "jetson": {
                "onnxruntime": {
                    "model.onnx": {
                        "results": [
                            {"batch": 8, "latency_ms": {"p50": 9.0}},
                            {"batch": 1, "latency_ms": {"p50": 2.5}},
                        ]
                    }
                }
            }
        },
    }
    read = {
        name: OBJECTIVES[name].read(card)
        for name in (
            "top1",
            "mean_abs_disparity",
            "worst_cell_recall",
            "size_bytes",
            "int8_agreement",
            "latency_ms",
            "int8_top1",
            "int8_worst_cell_agreement",
            "int8_worst_group_agreement",
        )
    }
    assert read == {
        "top1": 0.75,
        "mean_abs_disparity": 0.125,
        "worst_cell_recall": 0.5,
        "size_bytes": 1234,
        "int8_agreement": 0.97,
        "latency_ms": 2.5,
        "int8_top1": None,
        "int8_worst_cell_agreement": 0.875,
        "int8_worst_group_agreement": 0.9375,
    }


def test_dominates_hand_worked():
    ways = ["maximize", "minimize"]
    assert dominates([0.9, 0.1], [0.8, 0.2], ways)
    assert dominates([0.9, 0.1], [0.9, 0.2], ways)
    assert not dominates([0.9, 0.1], [0.9, 0.1], ways)  # equal: neither dominates
    assert not dominates([0.9, 0.3], [0.8, 0.2], ways)  # a trade-off


def test_worker_env_splits_cores_and_deals_gpus():
    assert worker_env(0, 2, cores=2, gpus=[]) == {"OMP_NUM_THREADS": "1"}
    assert worker_env(3, 4, cores=16, gpus=["0", "1"]) == {
        "OMP_NUM_THREADS": "4",
        "CUDA_VISIBLE_DEVICES": "1",
    }
    assert worker_env(0, 3, cores=2, gpus=[]) == {"OMP_NUM_THREADS": "1"}  # at least one
    assert worker_env(0, 2, cores=16, gpus=[], omp="2") == {"OMP_NUM_THREADS": "2"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--space", "distill.temprature=1:8"], "distill.temprature: unknown key; allowed here: "),
        (["--space", "data.bias=0.5:1.5"], "data.bias = 1.5"),
        (["--space", "distill.alpha=0:1", "--objective", "fairness:min"], "unknown objective 'fairness'"),
        (["--space", "distill.alpha=0:1", "--sampler", "cmaes"], "unknown sampler 'cmaes'; choose one of"),
        (["--space", "distill.alpha=0:1", "--trials", "0"], "--trials 0"),
        (["--space", "teacher.epochs=1:2", "--jobs", "2"], "change the teacher or baseline they share"),
    ],
)
def test_bad_space_or_objective_is_one_line_and_builds_nothing(tiny_recipe, tmp_path, args, needle):
    result = CliRunner().invoke(main, ["tune", str(tiny_recipe), *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error: "), lines
    if args[1].startswith(("distill.temprature", "data.bias")):  # the point that showed it
        assert lines[0].startswith("error: --space point ")
    assert not (tmp_path / "tiny").exists()


def test_sweep_jobs_refuses_points_with_their_own_teacher(tiny_recipe, tmp_path):
    result = CliRunner().invoke(
        main,
        ["sweep", str(tiny_recipe), "--grid", "teacher.epochs=1,2", "--jobs", "2", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: --jobs 2: the --grid points change the teacher")
    assert not (tmp_path / "tiny").exists()


def _study(storage: str, name: str):
    import optuna

    from edgekd.tune import _storage

    store = _storage(storage, Path("."))
    return optuna.load_study(study_name=name, storage=store)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # seven tiny builds
def test_six_trial_study_front_is_not_dominated_and_rerun_builds_nothing(tiny_recipe, tmp_path):
    runner = CliRunner()
    args = [
        "tune",
        str(tiny_recipe),
        "--space",
        "distill.alpha=0.05:0.95",
        "--space",
        "distill.temperature=1:8:log",
        "--objective",
        "top1:max",
        "--objective",
        "mean_abs_disparity:min",
        "--trials",
        "6",
        "--export-best",
        "--out",
        str(tmp_path),
        *FAST,
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    tune_dir = tmp_path / "tiny" / "tune" / "distill.alpha+distill.temperature"
    with open(tune_dir / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(r["state"] == "COMPLETE" for r in rows)
    values = {int(r["trial"]): [float(r["top1"]), float(r["mean_abs_disparity"])] for r in rows}
    ways = ["maximize", "minimize"]
    front = {n for n, v in values.items() if not any(dominates(w, v, ways) for w in values.values())}
    table = result.output.split("\n\n")[-2]
    marked = {int(line.split()[0]) for line in table.splitlines()[2:] if line.rstrip().endswith("*")}
    assert marked == front  # the front is exactly the trials no other trial dominates
    for r in rows:  # each trial is a real build with its own card holding the values it was told
        card = json.loads((Path(r["bundle"]) / "card.json").read_text())
        assert card["distillation"]["temperature"] == pytest.approx(float(r["distill.temperature"]))
        assert card["models"]["student"]["metrics"]["top1"] == float(r["objective:top1"])
    exported = sorted((tune_dir / "best").glob("*.yaml"))
    assert len(exported) == len(front)
    from edgekd.recipe import load_recipe

    alphas = {load_recipe(p).distill.alpha for p in exported}
    assert alphas == {float(r["distill.alpha"]) for r in rows if int(r["trial"]) in front}
    with Image_open(tune_dir / "accuracy_vs_disparity.png") as image:
        assert image.size == (605, 440)
    assert (tmp_path / "tiny" / "stages" / "teacher" / "done.json").is_file()  # shared, trained once

    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "has its 6 trials already" in again.output
    assert "release" not in again.output


def Image_open(path):
    from PIL import Image

    return Image.open(path)


ENV = {**os.environ, "PYTHONPATH": str(WORKTREE), "OMP_NUM_THREADS": "1"}


def _tune_args(tiny_recipe, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edgekd",
        "tune",
        str(tiny_recipe),
        "--space",
        "distill.alpha=0.05:0.95",
        "--trials",
        str(trials),
        "--out",
        str(out),
        *FAST,
        *extra,
    ]


def _tune_process(tiny_recipe, out: Path, trials: int, *extra: str) -> subprocess.Popen:
    """A ``tune`` in its own process, its output in ``out``.log (a pipe nobody reads would fill
    and stop it)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.log", "w") as log:
        return subprocess.Popen(
            _tune_args(tiny_recipe, out, trials, *extra), env=ENV, stdout=log, stderr=subprocess.STDOUT
        )


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a killed study and its resumed run
def test_a_killed_tune_resumes_and_ends_with_exactly_n_trials(tiny_recipe, tmp_path):
    import optuna

    db = f"sqlite:///{tmp_path / 'tiny' / 'tune' / 'distill.alpha' / 'study.db'}"
    first = _tune_process(tiny_recipe, tmp_path, 4)
    deadline = time.time() + 600
    while time.time() < deadline:  # kill it once its second trial is recorded
        time.sleep(1)
        try:
            done = [t for t in _study(db, "distill.alpha").get_trials() if t.state.is_finished()]
        except Exception:  # the study is not made yet
            continue
        if len(done) >= 2:
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    study = _study(db, "distill.alpha")
    killed_running = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    assert len(killed_running) == 1  # the third trial, cut short by the kill
    resumed = subprocess.run(_tune_args(tiny_recipe, tmp_path, 4), capture_output=True, text=True, env=ENV)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = _study(db, "distill.alpha").get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({t.params["distill.alpha"] for t in complete}) == 4  # none ran twice
    for stale in killed_running:  # the trial the kill cut short: failed as interrupted, run again
        again = next(t for t in trials if t.number == stale.number)
        assert again.state == optuna.trial.TrialState.FAIL
        assert again.user_attrs["failure"].startswith("interrupted")
        retry = [t for t in complete if t.user_attrs.get("retry_of") == stale.number]
        assert len(retry) == 1 and retry[0].params == stale.params
        assert f"trial {stale.number} was interrupted" in resumed.stdout


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two studies' worth of builds on a shared machine
def test_two_workers_share_one_journal_study(tiny_recipe, tmp_path):
    import optuna

    storage = f"journal:{tmp_path / 'shared' / 'tune.log'}"
    workers = [_tune_process(tiny_recipe, tmp_path / f"machine{n}", 4, "--storage", storage) for n in (1, 2)]
    codes = [w.wait(timeout=900) for w in workers]
    assert codes == [0, 0], [Path(f"{tmp_path / f'machine{n}'}.log").read_text() for n in (1, 2)]
    trials = _study(storage, "distill.alpha").get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 4 <= len(complete) <= 5  # two workers may each start a trial at the last count
    assert len({t.params["distill.alpha"] for t in complete}) == len(complete)  # none ran twice
    by_worker = {t.user_attrs["worker"] for t in complete}
    assert len(by_worker) == 2  # both workers took trials of the one study
    for t in complete:  # each trial was built once, by the worker that recorded it
        bundle = Path(t.user_attrs["row"]["bundle"])
        assert bundle.is_dir()
        others = [p for p in tmp_path.glob("machine*/tiny/tune/*/trials/*") if p != bundle.parent]
        assert all(
            json.loads((p / "bundle" / "card.json").read_text())["name"]
            != json.loads((bundle / "card.json").read_text())["name"]
            for p in others
            if (p / "bundle" / "card.json").is_file()
        )


@pytest.mark.slow
@pytest.mark.timeout(1200)  # eight point builds
def test_sweep_jobs_2_gives_the_rows_of_jobs_1(tiny_recipe, tmp_path, capfd):
    runner = CliRunner()
    rows = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        result = runner.invoke(
            main,
            [
                "sweep",
                str(tiny_recipe),
                "--grid",
                "distill.temperature=2,8",
                "--grid",
                "distill.alpha=0.5,0.9",
                "--jobs",
                str(jobs),
                "--out",
                str(out),
                *FAST,
            ],
        )
        assert result.exit_code == 0, result.output
        report = out / "tiny" / "sweep" / "distill.temperature+distill.alpha" / "results.csv"
        with open(report) as fh:
            rows[jobs] = [
                {k: v for k, v in r.items() if k not in ("bundle", "tarball")} for r in csv.DictReader(fh)
            ]
        if jobs == 2:
            assert "jobs: 2 builds at once" in result.output
            workers = capfd.readouterr().out  # the builds' own processes write to the terminal
            assert "[distill.temperature=8,distill.alpha=0.9] student: training" in workers
            assert workers.count("teacher: reused") == 3  # the first point trained it alone
    assert len(rows[1]) == 4 and rows[2] == rows[1]


def test_failed_gates_stopped_builds_and_missing_objectives_are_failed_trials_with_a_reason(tmp_path):
    import optuna

    from edgekd.jobs import BuildOutcome
    from edgekd.tune import _counted, _record

    study = optuna.create_study(directions=["maximize", "minimize"])
    objectives = parse_objectives(["top1:max", "mean_abs_disparity:min"])
    gate = {
        "name": "min_top1",
        "artifact": "student",
        "metric": "top1",
        "value": 0.25,
        "comparison": ">=",
        "threshold": 0.9,
        "passed": False,
    }
    card = {"models": {"student": {"metrics": {"top1": 0.25, "mean_abs_disparity": 0.1}}}}
    outcomes = [
        BuildOutcome(card=None, error="student: the loss is NaN at epoch 2"),
        BuildOutcome(card={**card, "gates": [gate]}),
    ]
    for outcome in outcomes:
        trial = study.ask({"distill.alpha": optuna.distributions.FloatDistribution(0, 1)})
        _record(study, trial, outcome, objectives, tmp_path, log=lambda m: None)
    int8 = parse_objectives(["int8_agreement"])
    lone = optuna.create_study(directions=["maximize"])
    trial = lone.ask({"distill.alpha": optuna.distributions.FloatDistribution(0, 1)})
    _record(lone, trial, BuildOutcome(card={**card, "gates": []}), int8, tmp_path, log=lambda m: None)
    reasons = [t.user_attrs["failure"] for t in study.trials + lone.trials]
    assert [t.state.name for t in study.trials + lone.trials] == ["FAIL"] * 3
    assert all(t.values is None for t in study.trials + lone.trials)  # never a number
    assert reasons == [
        "build stopped: student: the loss is NaN at epoch 2",
        "gate failed: min_top1 on student: top1 is 0.2500, needs >= 0.9",
        "int8_agreement: the card has no onnx_int8 model (export.int8.enabled)",
    ]
    assert _counted(study) == (2, 0)  # failed trials count toward --trials
    assert study.best_trials == []  # and the front ignores them


def test_whole_number_ends_over_a_float_key_make_a_float_range():
    from edgekd.recipe import load_recipe
    from edgekd.tune import _as_recipe_types

    recipe = load_recipe(Path(__file__).parent / "tiny.yaml")
    alpha, epochs = parse_space(["distill.alpha=0:1", "student.epochs=1:3"])
    assert isinstance(recipe.distill.alpha, float) and isinstance(recipe.student.epochs, int)
    as_float = _as_recipe_types(alpha, recipe)
    assert (as_float.low, as_float.high) == (0.0, 1.0) and isinstance(as_float.low, float)
    assert _as_recipe_types(epochs, recipe) == epochs  # an int key keeps its integers
