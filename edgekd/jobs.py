"""``--jobs N`` of ``edgekd sweep`` and ``edgekd tune``: N point builds at once.

Every point (a grid point or a trial) is a normal build into its own folder that shares the
teacher, baseline and teacher-outputs stages of the main run folder. :class:`BuildPool` runs
them:

- ``jobs=1``: one after another in this process, as ``edgekd build`` would.
- ``jobs=N``: each build in a fresh process (``spawn``: torch and CUDA start clean), at most N
  at once. The pool holds the main run folder's lock for all of them (:func:`edgekd.lock.run_lock`,
  handed down with :func:`edgekd.lock.held_by_parent`); each build takes its own point folder's
  lock, so nothing else writes into a folder a build is using. The first build runs alone: it
  trains the shared stages, which every later build only reads. The cores are split between
  the builds (``OMP_NUM_THREADS`` = cores // N, which a recipe's ``threads: auto`` follows; a
  recipe that names a thread count keeps it) and, where GPUs exist, each build sees one
  (``CUDA_VISIBLE_DEVICES``, round-robin over the pool's slots).

Points that would train different shared stages (a grid over ``teacher.epochs``, say) cannot
share one folder at once: :func:`check_shared` refuses them with ``--jobs`` over 1.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError
from edgekd.recipe import Recipe

__all__ = [
    "PointBuild",
    "BuildOutcome",
    "BuildPool",
    "check_jobs",
    "check_shared",
    "shared_inputs",
    "worker_env",
]


@dataclass(frozen=True)
class PointBuild:
    """One point's build: its recipe, its folder and the label its log lines carry."""

    recipe: Recipe
    run_dir: Path
    label: str


@dataclass(frozen=True)
class BuildOutcome:
    """What a point's build left: its card, or the one-line reason it stopped (an
    :class:`~edgekd.errors.EdgeKDError`: a diverged training, a data problem)."""

    card: dict | None
    error: str | None = None


def check_jobs(jobs: int) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise EdgeKDError(f"--jobs {jobs!r}: give a whole number of builds at once, at least 1")
    return jobs


def shared_inputs(recipe: Recipe) -> str:
    """The settings the shared stages (teacher, baseline, teacher outputs) are trained from:
    the seed, the data, both networks and, when the baseline is debiased, the debiasing."""
    from edgekd.data import PIXEL_NEUTRAL

    dump = recipe.model_dump(mode="json")
    shared = {
        "seed": dump["seed"],
        "teacher": dump["teacher"],
        "student": dump["student"],
        "data": {k: v for k, v in dump["data"].items() if k not in PIXEL_NEUTRAL},
    }
    if recipe.debias.active and "baseline" in recipe.debias.apply_to:
        shared["debias"] = dump["debias"]
    return json.dumps(shared, sort_keys=True)


def check_shared(recipes: list[Recipe], jobs: int, *, option: str) -> None:
    """With ``jobs`` over 1, every point must share the same teacher and baseline."""
    if jobs > 1 and len({shared_inputs(r) for r in recipes}) > 1:
        raise EdgeKDError(
            f"--jobs {jobs}: the {option} points change the teacher or baseline they "
            f"share (a seed, data, teacher., student. or baseline debias key), which "
            f"one folder cannot train twice at once; run them with --jobs 1"
        )


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_env(
    slot: int, jobs: int, *, cores: int, gpus: list[str], omp: str | None = None
) -> dict[str, str]:
    """The environment of the build in pool slot ``slot`` (0-based) of ``jobs``: its share of
    the ``cores`` (``cores // jobs``, at least 1, never more than an ``OMP_NUM_THREADS`` the
    parent has) and, where there are ``gpus``, one of them round-robin.

    >>> worker_env(1, 2, cores=8, gpus=["0", "1", "2"])
    {'OMP_NUM_THREADS': '4', 'CUDA_VISIBLE_DEVICES': '1'}
    """
    threads = max(1, cores // jobs)
    if omp is not None and omp.isdigit() and int(omp) >= 1:
        threads = min(threads, int(omp))
    env = {"OMP_NUM_THREADS": str(threads)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def _build(build: PointBuild, out: Path, shared_dir: Path, log: Callable[[str], None]) -> BuildOutcome:
    from edgekd.pipeline import build_recipe

    try:
        result = build_recipe(build.recipe, out=out, log=log, run_dir=build.run_dir, shared_dir=shared_dir)
    except EdgeKDError as err:
        return BuildOutcome(card=None, error=str(err).splitlines()[0])
    assert result is not None  # None only on a torchrun rank other than 0
    return BuildOutcome(card=result.card)


def _build_in_worker(build: PointBuild, out: Path, shared_dir: Path, env: dict[str, str]) -> BuildOutcome:
    """A spawned process's one build (nothing of torch is loaded yet, so the environment still
    decides its threads and GPU)."""
    from edgekd.lock import held_by_parent

    os.environ.update(env)

    def log(message: str) -> None:
        print(f"[{build.label}] {message}", flush=True)

    with held_by_parent(shared_dir):
        return _build(build, out, shared_dir, log)


class BuildPool:
    """Runs :class:`PointBuild` s (see the module doc); use as a context manager, which holds
    the shared run folder's lock.

    Parameters
    ----------
    jobs : int
        Builds at once.
    out : Path
        The runs directory.
    shared_dir : Path
        The main run folder, whose shared stages every point uses.
    log : callable
        Where progress lines go.
    """

    def __init__(self, jobs: int, *, out: Path, shared_dir: Path, log: Callable[[str], None]) -> None:
        self.jobs = check_jobs(jobs)
        self.out = Path(out)
        self.shared_dir = Path(shared_dir)
        self.log = log
        self._stack = ExitStack()
        self._context: BaseContext | None = None  # spawn, where builds run in their own processes
        self._executors: list[ProcessPoolExecutor] = []
        self._free: list[int] = list(range(jobs))
        self._slots = threading.Condition()  # guards _free and _executors
        self._envs: list[dict[str, str]] = []

    def __enter__(self) -> BuildPool:
        from edgekd.lock import run_lock

        self._stack.enter_context(run_lock(self.shared_dir))
        if self.jobs > 1:
            import multiprocessing

            cores, gpus = _cores(), _visible_gpus()
            omp = os.environ.get("OMP_NUM_THREADS")
            self._envs = [
                worker_env(slot, self.jobs, cores=cores, gpus=gpus, omp=omp) for slot in range(self.jobs)
            ]
            where = f"GPUs {', '.join(gpus)} round-robin" if gpus else "no GPU"
            self.log(
                f"jobs: {self.jobs} builds at once, {self._envs[0]['OMP_NUM_THREADS']} thread(s) "
                f"each ({cores} cores // {self.jobs}; a recipe's own threads setting wins), {where}"
            )
            self._context = multiprocessing.get_context("spawn")
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            with self._slots:
                running = list(self._executors)
            for executor in running:  # the builds still running finish first
                executor.shutdown(wait=True)
        finally:
            self._stack.__exit__(*exc)

    def submit(self, build: PointBuild) -> Future:
        """Start ``build`` (at most ``jobs`` may be running); its future's result is a
        :class:`BuildOutcome`."""
        if self._context is None:
            future: Future = Future()
            try:
                future.set_result(_build(build, self.out, self.shared_dir, self.log))
            except BaseException as err:  # noqa: B036  (a bug or Ctrl-C: the caller re-raises it)
                future.set_exception(err)
            return future
        # one fresh process per build (max_tasks_per_child needs Python 3.11): torch, CUDA and
        # the environment start clean, and a crash takes only its own build down
        executor = ProcessPoolExecutor(max_workers=1, mp_context=self._context)
        with self._slots:  # a finished build's future wakes its waiter before it frees its slot
            self._slots.wait_for(lambda: bool(self._free))
            slot = self._free.pop(0)
            self._executors.append(executor)
        future = executor.submit(_build_in_worker, build, self.out, self.shared_dir, self._envs[slot])
        future.add_done_callback(functools.partial(self._release, slot, executor))
        return future

    def _release(self, slot: int, executor: ProcessPoolExecutor, _future: Future) -> None:
        with self._slots:
            self._free.append(slot)
            if executor in self._executors:
                self._executors.remove(executor)
            self._slots.notify_all()
        executor.shutdown(wait=False)

    def run_all(
        self, builds: list[PointBuild], *, started: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, BuildOutcome]]:
        """Run every build (the first alone when ``jobs`` > 1: it trains the shared stages);
        yield ``(index, outcome)`` as each finishes. ``started(index)`` is called as each
        build starts."""
        from concurrent.futures import FIRST_COMPLETED, wait

        running: dict[Future, int] = {}
        queue = list(enumerate(builds))
        first = True
        while queue or running:
            while queue and len(running) < (1 if first else self.jobs):
                index, build = queue.pop(0)
                if started is not None:
                    started(index)
                running[self.submit(build)] = index
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                first = False
                yield running.pop(future), future.result()
