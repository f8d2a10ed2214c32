"""``edgekd tune``: a multi-objective search (Optuna) for the accuracy-fairness-size front.

    edgekd tune recipes/quickstart.yaml --space distill.alpha=0.1:0.9 \\
        --space distill.temperature=1:8:log --space debias.lambda=0,0.5,1 \\
        --objective top1:max --objective mean_abs_disparity:min --trials 12

Each trial is a sweep point (:mod:`edgekd.sweep`): the recipe with ``--set KEY=VALUE`` for the
values the sampler picked, its own release name and a normal build folder with its card under
``runs/<name>/tune/<study>/trials/``, sharing the main run's teacher and baseline; ``--jobs N``
runs N at once (:mod:`edgekd.jobs`). Its objectives are read from its card (:data:`OBJECTIVES`).
A trial whose build stopped (a diverged training) or whose card failed a release gate is
recorded as failed, with the reason in its ``failure`` attribute, never as a number; the front
ignores it.

The study lives in Optuna storage: by default SQLite in the study's folder (``study.db``:
embedded, nothing to start), so a killed ``tune`` resumes when run again; ``--storage URL``
takes any RDB URL Optuna takes (``postgresql://...``, ``mysql+pymysql://...``, ``sqlite:///...``)
or ``journal:PATH`` (Optuna's journal file, for a shared file system), and N machines running
the same command share one study. A trial left running by a worker of this host that died is
marked failed (``interrupted``) and its values are run again first.

Sampler: multi-objective TPE by default (:data:`SAMPLERS`). NSGA-II, Optuna's default for
several objectives, draws its whole first generation (``population_size``, 50) at random, so a
study of 10 to 30 builds would be a random search; TPE samples at random only its first few
trials (``n_startup_trials`` = trials // 3, 2 to 10) and then models the trials that are on or
near the front (Ozaki et al., "Multiobjective tree-structured Parzen estimator", JAIR 2022,
which report it ahead of NSGA-II with few evaluations). With several workers its ``constant_liar``
keeps them from proposing the same values. The sampler is seeded from the recipe's ``seed``, so
one worker's study is reproducible; a worker on a shared ``--storage`` adds its host and pid, so
two workers never draw the same values.
"""

from __future__ import annotations

import math
import os
import socket
import time
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgekd.errors import EdgeKDError
from edgekd.registry import Registry
from edgekd.yaml_bounded import load_yaml

__all__ = [
    "Dimension",
    "Objective",
    "OBJECTIVES",
    "SAMPLERS",
    "parse_space",
    "parse_objectives",
    "run_tune",
    "TuneResult",
    "format_tune_table",
    "DEFAULT_OBJECTIVES",
    "dominates",
]

DEFAULT_OBJECTIVES = ("top1:max", "mean_abs_disparity:min")
_FAILURE = "failure"  # the trial attribute with the reason a trial failed
_WORKER = "worker"  # host:pid of the process that runs a trial
_INTERRUPTED = "interrupted"


# ---------------------------------------------------------------------------------------------
# the search space


@dataclass(frozen=True)
class Dimension:
    """One ``--space``: a recipe key and a range (``low``..``high``, integers when both ends
    are, on a log scale with ``log``) or a list of ``choices``."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        assert self.low is not None and self.high is not None
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def ends(self) -> list:
        """The values that stand for the whole range when the recipe checks it."""
        return list(self.choices) if self.choices else [self.low, self.high]

    def spec(self) -> str:
        if self.choices:
            return f"{self.key}={','.join(str(c) for c in self.choices)}"
        return f"{self.key}={self.low}:{self.high}" + (":log" if self.log else "")


def _number(raw: str, item: str) -> int | float:
    try:
        value = load_yaml(raw, "--space")
    except yaml.YAMLError:
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EdgeKDError(
            f"--space {item!r}: {raw!r} is not a number; a range is KEY=LOW:HIGH[:log] "
            f"with numbers, e.g. distill.alpha=0.1:0.9"
        )
    return value


def parse_space(items: list[str] | tuple[str, ...]) -> list[Dimension]:
    """``["distill.alpha=0.1:0.9", "distill.temperature=1:8:log", "debias.method=none,adversarial"]``
    -> one :class:`Dimension` each. The keys are checked against the recipe by :func:`run_tune`."""
    if not items:
        raise EdgeKDError(
            "--space: give at least one KEY=LOW:HIGH[:log] or KEY=A,B,... "
            "(e.g. --space distill.alpha=0.1:0.9)"
        )
    dims: list[Dimension] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")) or not text.strip():
            raise EdgeKDError(
                f"--space {item!r}: expected KEY=LOW:HIGH[:log] or KEY=A,B,... with a "
                f"dotted recipe key, e.g. distill.alpha=0.1:0.9"
            )
        if key in {d.key for d in dims}:
            raise EdgeKDError(f"--space {key}: given twice; give each key one range or list")
        if key == "name":
            raise EdgeKDError(
                "--space name: a trial's release name is made from its values; "
                "search a setting of the build instead"
            )
        if "," in text:
            raw = [v.strip() for v in text.split(",")]
            if any(not v for v in raw):
                raise EdgeKDError(f"--space {key}: empty value in {text!r}; separate values with commas")
            choices = []
            for value in raw:
                try:
                    choice = load_yaml(value, f"--space {key}")
                except yaml.YAMLError:
                    raise EdgeKDError(f"--space {key}: value {value!r} is not a valid YAML value") from None
                if not (choice is None or isinstance(choice, (bool, int, float, str))):
                    raise EdgeKDError(
                        f"--space {key}: value {value!r} is not a number, text, true/false "
                        f"or null, the values a list may hold"
                    )
                choices.append(choice)
            if len(set(map(repr, choices))) < len(choices):
                raise EdgeKDError(f"--space {key}: a value is listed twice in {text!r}")
            dims.append(Dimension(key, choices=tuple(choices)))
            continue
        parts = [p.strip() for p in text.split(":")]
        log = len(parts) == 3 and parts[2] == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise EdgeKDError(
                f"--space {item!r}: expected KEY=LOW:HIGH, KEY=LOW:HIGH:log or "
                f"KEY=A,B,... (two or more values)"
            )
        low, high = _number(parts[0], item), _number(parts[1], item)
        if not low < high:
            raise EdgeKDError(f"--space {key}: LOW {low} must be below HIGH {high}")
        if log and low <= 0:
            raise EdgeKDError(f"--space {key}: a log range needs LOW above 0, got {low}")
        dims.append(Dimension(key, low=low, high=high, log=log))
    return dims


# ---------------------------------------------------------------------------------------------
# the objectives


@dataclass(frozen=True)
class Objective:
    """A number read from a trial's card. ``read`` returns it, or None where the card has none
    (``missing`` says why, for the trial's failure)."""

    name: str
    direction: str  # the natural one: "maximize" or "minimize"
    read: Callable[[dict], float | None]
    missing: str
    description: str


OBJECTIVES: Registry[Objective] = Registry("objective")
"""The objectives ``--objective NAME[:max|min]`` picks by name."""


def _student(key: str) -> Callable[[dict], float | None]:
    from edgekd.fairness.metric_table import METRICS

    metric = METRICS[key]
    return lambda card: metric.read(card["models"]["student"]["metrics"])


def _model(name: str, *path: str) -> Callable[[dict], float | None]:
    def read(card: dict) -> float | None:
        value: Any = card.get("models", {}).get(name)
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return read


def _latency(card: dict) -> float | None:
    """The median batch-1 latency of the shipped model.onnx in the card's first bench result
    (``edgekd bench --update-card``), in ms."""
    for by_backend in (card.get("bench") or {}).values():
        for by_file in by_backend.values():
            result = by_file.get("model.onnx")
            for row in (result or {}).get("results", []):
                if row.get("batch") == 1:
                    return (row.get("latency_ms") or {}).get("p50")
    return None


def _register_objectives() -> None:
    from edgekd.fairness.metric_table import METRICS

    for metric in METRICS.values():
        OBJECTIVES.add(
            metric.key,
            Objective(
                metric.key,
                "maximize" if metric.higher_is_better else "minimize",
                _student(metric.key),
                "the card has no value for it",
                f"the distilled student's {metric.description}",
            ),
        )
    for name, direction, read, missing, description in (
        (
            "worst_cell_recall",
            "maximize",
            _model("student", "metrics", "worst_cell", "recall"),
            "no (class, group) cell had enough images",
            "the student's lowest (class, group) recall",
        ),
        (
            "int8_top1",
            "maximize",
            _model("onnx_int8", "metrics", "top1"),
            "the card has no onnx_int8 model (export.int8.enabled)",
            "the INT8 file's top-1",
        ),
        (
            "int8_agreement",
            "maximize",
            _model("onnx_int8", "vs_student", "prediction_agreement"),
            "the card has no onnx_int8 model (export.int8.enabled)",
            "share of test images on which the INT8 file predicts what the student predicts",
        ),
        (
            "int8_worst_cell_agreement",
            "maximize",
            _model("onnx_int8", "vs_student", "worst_cell_agreement", "agreement"),
            "the card has no onnx_int8 worst-cell agreement (export.int8.enabled)",
            "the INT8 file's agreement with the student in its worst (class, group) cell",
        ),
        (
            "int8_worst_group_agreement",
            "maximize",
            _model("onnx_int8", "vs_student", "worst_group_agreement", "agreement"),
            "the card has no onnx_int8 worst-group agreement (export.int8.enabled)",
            "the INT8 file's agreement with the student in its worst group",
        ),
        (
            "int8_worst_cell_recall",
            "maximize",
            _model("onnx_int8", "metrics", "worst_cell", "recall"),
            "the card has no onnx_int8 worst cell (export.int8.enabled)",
            "the INT8 file's lowest (class, group) recall",
        ),
        (
            "size_bytes",
            "minimize",
            _model("onnx", "size_bytes"),
            "the card has no model.onnx size",
            "the size of model.onnx",
        ),
        (
            "int8_size_bytes",
            "minimize",
            _model("onnx_int8", "size_bytes"),
            "the card has no onnx_int8 model (export.int8.enabled)",
            "the size of model.int8.onnx",
        ),
        (
            "latency_ms",
            "minimize",
            _latency,
            "the card has no bench result of model.onnx at batch 1 (edgekd bench --update-card)",
            "median batch-1 latency of model.onnx from the card's bench result",
        ),
    ):
        OBJECTIVES.add(name, Objective(name, direction, read, missing, description))


_register_objectives()


def parse_objectives(items: list[str] | tuple[str, ...]) -> list[tuple[Objective, str]]:
    """``["top1:max", "mean_abs_disparity"]`` -> ``[(objective, "maximize"), (objective,
    "minimize")]`` (no direction: the objective's own)."""
    chosen: list[tuple[Objective, str]] = []
    for item in items or DEFAULT_OBJECTIVES:
        name, sep, way = item.strip().partition(":")
        objective = OBJECTIVES.get(name.strip(), key=f"--objective {item}")
        if sep and way.strip() not in ("max", "min"):
            raise EdgeKDError(f"--objective {item!r}: the direction is max or min, e.g. top1:max")
        if name.strip() in {o.name for o, _ in chosen}:
            raise EdgeKDError(f"--objective {name}: given twice")
        direction = objective.direction if not sep else ("maximize" if way.strip() == "max" else "minimize")
        chosen.append((objective, direction))
    return chosen


# ---------------------------------------------------------------------------------------------
# samplers


def _tpe(seed: int, trials: int):
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, n_startup_trials=max(2, min(10, trials // 3))
    )


def _nsga2(seed: int, trials: int):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))


def _random(seed: int, trials: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


SAMPLERS: Registry[Callable[[int, int], Any]] = Registry("sampler")
"""``--sampler``: tpe (multi-objective TPE, the default; see the module doc), nsga2 (NSGA-II,
its population a third of the trials, 4 to 50), random."""
SAMPLERS.add("tpe", _tpe)
SAMPLERS.add("nsga2", _nsga2)
SAMPLERS.add("random", _random)


# ---------------------------------------------------------------------------------------------
# the study


def _storage(url: str | None, tune_dir: Path):
    """The study's storage: SQLite in ``tune_dir`` by default, ``journal:PATH`` for Optuna's
    journal file, any other URL for Optuna's RDB storage."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        tune_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(tune_dir / 'study.db').resolve()}"
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :]).expanduser()
        if not url[len("journal:") :]:
            raise EdgeKDError(
                "--storage journal:PATH: give the journal file's path, e.g. journal:/shared/tune.log"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        return RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        )
    except (ImportError, ModuleNotFoundError) as err:
        raise EdgeKDError(
            f"--storage {url.split('://')[0]}://...: its database driver is not "
            f"installed ({err.name}); install it, or use sqlite:///PATH or "
            f"journal:PATH"
        ) from None
    except (ValueError, optuna.exceptions.StorageInternalError) as err:
        raise EdgeKDError(
            f"--storage: cannot open {url!r} ({str(err).splitlines()[0]}); give an "
            f"RDB URL (sqlite:///PATH, postgresql://..., mysql+pymysql://...) or "
            f"journal:PATH"
        ) from None


def _alive(worker: str | None) -> bool:
    """Whether the process ``host:pid`` that runs a trial may still be running: always for
    another host (its heartbeat is not ours to judge), by its pid on this one."""
    if not worker:
        return True
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover(study, log: Callable[[str], None]) -> None:
    """Mark the trials a dead worker of this host left running as failed (interrupted) and put
    their values first in the queue."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get(_WORKER)
        if worker is None and time.time() - trial.datetime_start.timestamp() < 120:
            continue  # just asked by a worker that has not yet named itself
        if _alive(worker):
            continue
        _fail(study, trial, f"{_INTERRUPTED}: its worker {worker or '(unknown)'} stopped; run again")
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        log(f"tune: trial {trial.number} was interrupted ({worker}); its values are run again")


def _fail(study, trial, reason: str) -> None:
    import optuna

    live = optuna.trial.Trial(study, trial._trial_id)  # also for a FrozenTrial of a dead worker
    live.set_user_attr(_FAILURE, reason)
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _counted(study) -> tuple[int, int]:
    """Trials that count toward ``--trials``: finished ones (complete, or failed with a reason
    other than an interruption) and ones that are running."""
    import optuna

    done = running = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.COMPLETE:
            done += 1
        elif trial.state == optuna.trial.TrialState.FAIL and not str(
            trial.user_attrs.get(_FAILURE, _INTERRUPTED)
        ).startswith(_INTERRUPTED):
            done += 1
        elif trial.state == optuna.trial.TrialState.RUNNING:
            running += 1
    return done, running


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """Whether values ``a`` are at least as good as ``b`` on every objective and better on one.

    >>> dominates([0.9, 0.1], [0.8, 0.1], ["maximize", "minimize"])
    True
    """
    signs = [1 if d == "maximize" else -1 for d in directions]
    better_or_equal = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    return better_or_equal and any(s * x > s * y for s, x, y in zip(signs, a, b))


@dataclass
class TuneResult:
    """The study's folder and name, its trials as result rows (complete first, by trial number;
    failed ones with ``failure``), the rows on the front, the keys, CSV, plots and exported
    recipes."""

    tune_dir: Path
    study_name: str
    storage: str
    rows: list[dict]
    front: list[int]  # indices into rows
    keys: list[str]
    objectives: list[tuple[str, str]]
    csv_path: Path
    plots: list[Path] = field(default_factory=list)
    exported: list[Path] = field(default_factory=list)
    ran: int = 0  # trials this command built or finished


def _as_recipe_types(dim: Dimension, recipe) -> Dimension:
    """A range written with whole ends (``debias.lambda=0:1``) over a key the recipe holds as a
    float is a float range, not the integers 0 and 1."""
    if dim.choices or not (isinstance(dim.low, int) and isinstance(dim.high, int)):
        return dim
    value = recipe
    for part in dim.key.split("."):
        value = getattr(value, part, None)
    if isinstance(value, float):
        return Dimension(dim.key, low=float(dim.low), high=float(dim.high), log=dim.log)
    return dim


def run_tune(
    recipe_path: str | Path,
    space_items: list[str] | tuple[str, ...],
    objective_items: list[str] | tuple[str, ...] = (),
    *,
    trials: int = 20,
    out: str | Path = "runs",
    overrides: tuple[str, ...] = (),
    storage: str | None = None,
    study_name: str | None = None,
    sampler: str = "tpe",
    jobs: int = 1,
    export_best: bool = False,
    log: Callable[[str], None] = print,
) -> TuneResult:
    """Search ``space_items`` for the front of ``objective_items`` in ``trials`` trials (see
    the module doc), ``jobs`` builds at once; write the table's CSV, the plots and, with
    ``export_best``, one recipe per front point."""
    import optuna

    from edgekd.jobs import BuildPool, check_jobs, check_shared
    from edgekd.recipe import load_recipe
    from edgekd.sweep import point_recipe

    check_jobs(jobs)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise EdgeKDError(f"--trials {trials!r}: give a whole number of trials, at least 1")
    make_sampler = SAMPLERS.get(sampler, key="--sampler")
    objectives = parse_objectives(objective_items)
    base = load_recipe(recipe_path, overrides)
    dims = [_as_recipe_types(d, base) for d in parse_space(space_items)]
    # every key and both ends of every range must make a valid recipe before anything is built
    ends = [
        point_recipe(recipe_path, overrides, {d.key: value}, base.name, option="--space")
        for d in dims
        for value in d.ends()
    ]
    check_shared([base, *ends], jobs, option="--space")
    name = study_name or "+".join(d.key for d in dims)
    if not name or "/" in name or name.startswith("."):
        raise EdgeKDError(f"--study {name!r}: a study name is a folder name (no '/', not starting with '.')")
    run_dir = Path(out) / base.name
    tune_dir = run_dir / "tune" / name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = _storage(storage, tune_dir)
    seed = (
        base.seed
        if storage is None
        else base.seed + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_000
    )
    study = optuna.create_study(
        study_name=name,
        storage=store,
        load_if_exists=True,
        directions=[
            optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else optuna.study.StudyDirection.MINIMIZE
            for _, d in objectives
        ],
        sampler=make_sampler(seed, trials),
    )
    _check_study(study, dims, objectives, overrides, base)
    log(
        f"tune: study {name!r} in {storage or tune_dir / 'study.db'}; sampler {sampler} (seed {seed}); "
        f"objectives " + ", ".join(f"{o.name} {d[:3]}" for o, d in objectives)
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    _recover(study, log)
    done, _ = _counted(study)
    ran = 0
    running: dict[Future, Any] = {}
    with BuildPool(jobs, out=Path(out), shared_dir=run_dir, log=log) as pool:
        first = True  # the first build runs alone: it trains the shared stages
        try:
            while True:
                while len(running) < (1 if first else jobs) and sum(_counted(study)) < trials:
                    trial = study.ask()
                    trial.set_user_attr(_WORKER, worker)
                    future = _start(trial, dims, recipe_path, overrides, base, tune_dir, pool, log, trials)
                    running[future] = trial
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    first = False
                    outcome = future.result()  # a bug or Ctrl-C in the build raises here
                    _record(study, running.pop(future), outcome, objectives, tune_dir, log)
                    ran += 1
        except BaseException:
            for trial in running.values():  # Ctrl-C or a bug: their values run first next time
                _fail(study, trial, f"{_INTERRUPTED}: this worker stopped ({worker}); run again")
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
    if done and not ran:
        log(f"tune: the study has its {trials} trials already; raise --trials to search further")
    return _report(
        study,
        dims,
        objectives,
        recipe_path,
        overrides,
        base,
        tune_dir,
        name,
        storage or str(tune_dir / "study.db"),
        export_best,
        ran,
    )


def _check_study(study, dims: list[Dimension], objectives, overrides, base) -> None:
    """A study is made once with its space, objectives and recipe; a later worker must bring the
    same, or the sampler would mix searches."""
    setup = {
        "space": [d.spec() for d in dims],
        "objectives": [f"{o.name}:{d[:3]}" for o, d in objectives],
        "recipe_sha256": base.sha256(),
    }
    known = study.user_attrs.get("edgekd")
    if known is None:
        study.set_user_attr("edgekd", setup)
        return
    for what, value in setup.items():
        if known.get(what) != value:
            flag = {"space": "--space", "objectives": "--objective", "recipe_sha256": "recipe or --set"}[what]
            raise EdgeKDError(
                f"study {study.study_name!r} was made with another {flag} "
                f"({known.get(what)}); give the same, or a new study with --study NAME"
            )


def _start(trial, dims, recipe_path, overrides, base, tune_dir, pool, log, trials) -> Future:
    """Draw a trial's values and start its build (or take the card a build of the same values
    left in its folder)."""
    from edgekd.jobs import BuildOutcome, PointBuild
    from edgekd.sweep import finished_card, point_folder, point_name, point_recipe

    point = {d.key: d.suggest(trial) for d in dims}
    folder = tune_dir / "trials" / point_folder(point)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in point.items())
    try:
        recipe = point_recipe(recipe_path, overrides, point, point_name(base.name, point), option="--space")
    except EdgeKDError as err:
        return _done(BuildOutcome(card=None, error=str(err)))
    card = finished_card(folder, recipe)
    if card is not None:
        log(f"tune trial {trial.number} ({shown}): built earlier, card reused")
        return _done(BuildOutcome(card=card))
    log(f"tune trial {trial.number} of {trials} ({shown}): release {recipe.name}")
    return pool.submit(PointBuild(recipe, folder, f"trial {trial.number}"))


def _done(outcome) -> Future:
    future: Future = Future()
    future.set_result(outcome)
    return future


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _record(study, trial, outcome, objectives, tune_dir: Path, log: Callable[[str], None]) -> None:
    """Tell the study a trial's values, or that it failed and why."""
    from edgekd.card.gates import describe_gate, failed_gates
    from edgekd.sweep import point_folder, result_row

    point = trial.params
    folder = tune_dir / "trials" / point_folder(point)
    reason: str | None
    if outcome.error is not None:
        reason = f"build stopped: {outcome.error}"
    elif failed_gates(outcome.card):
        reason = "; ".join(describe_gate(g) for g in failed_gates(outcome.card))
    else:
        values, missing = [], []
        for objective, _ in objectives:
            value = objective.read(outcome.card)
            if value is None or not math.isfinite(value):
                missing.append(f"{objective.name}: {objective.missing}")
            values.append(value)
        reason = "; ".join(missing) if missing else None
    if reason is not None:
        _fail(study, trial, reason)
        log(f"tune trial {trial.number}: FAIL ({reason})")
        return
    row = result_row(point, outcome.card, folder)
    trial.set_user_attr("row", {k: v for k, v in row.items() if k not in point})
    study.tell(trial, values)
    log(
        f"tune trial {trial.number}: "
        + ", ".join(f"{o.name} {v:.4g}" for (o, _), v in zip(objectives, values))
    )


def format_tune_table(rows: list[dict], keys: list[str], front: list[int]) -> str:
    """The complete trials as the sweep's table (``trial`` first, the study's front marked),
    then one line per failed trial with its reason."""
    from edgekd.sweep import format_sweep_table

    complete = [r for r in rows if r["state"] == "COMPLETE"]
    table = format_sweep_table(complete, ["trial", *keys], front=front) if complete else "no complete trial"
    for r in rows:
        if r["state"] != "COMPLETE":
            shown = ", ".join(f"{k}={_short(r.get(k))}" for k in keys)
            table += f"\ntrial {r['trial']} ({shown}): FAIL {r.get('failure') or ''}"
    return table


def _report(
    study,
    dims,
    objectives,
    recipe_path,
    overrides,
    base,
    tune_dir: Path,
    name: str,
    storage: str,
    export_best: bool,
    ran: int,
) -> TuneResult:
    import optuna

    from edgekd.sweep import point_name, point_recipe, write_results_csv, write_sweep_plots

    keys = [d.key for d in dims]
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        and not str(t.user_attrs.get(_FAILURE, "")).startswith(_INTERRUPTED)
    ]
    complete = sorted(
        (t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.number
    )
    failed = sorted(
        (t for t in trials if t.state != optuna.trial.TrialState.COMPLETE), key=lambda t: t.number
    )
    best = {t.number for t in study.best_trials} if complete else set()
    rows = []
    for t in complete + failed:
        row = {
            "trial": t.number,
            **{k: t.params.get(k) for k in keys},
            **t.user_attrs.get("row", {}),
            "state": t.state.name,
            "failure": t.user_attrs.get(_FAILURE),
        }
        for (objective, _), value in zip(objectives, t.values or [None] * len(objectives)):
            row[f"objective:{objective.name}"] = value
        rows.append(row)
    front = [i for i, t in enumerate(complete) if t.number in best]
    report_dir = tune_dir
    extra = ("state", "failure", *(f"objective:{o.name}" for o, _ in objectives))
    csv_path = write_results_csv(report_dir / "results.csv", rows, ["trial", *keys], extra=extra)
    plots = (
        write_sweep_plots(
            rows[: len(complete)],
            keys,
            report_dir,
            front=front,
            each="trial",
            labels=[f"#{t.number}" for t in complete],
        )
        if complete
        else []
    )
    exported = []
    if export_best:
        from edgekd.files import write_atomic

        for i in front:
            point = {k: rows[i][k] for k in keys}
            release = point_name(base.name, point)
            recipe = point_recipe(recipe_path, overrides, point, release, option="--space")
            path = report_dir / "best" / f"{release}.yaml"
            write_atomic(
                path,
                f"# edgekd tune: study {name}, trial {rows[i]['trial']} (on the front)\n" + recipe.to_yaml(),
            )
            exported.append(path)
    return TuneResult(
        tune_dir=tune_dir,
        study_name=name,
        storage=storage,
        rows=rows,
        front=front,
        keys=keys,
        objectives=[(o.name, d) for o, d in objectives],
        csv_path=csv_path,
        plots=plots,
        exported=exported,
        ran=ran,
    )
