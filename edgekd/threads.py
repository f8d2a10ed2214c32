"""How many CPU threads a build computes with (recipe ``threads``, default ``auto``).

Every core is the fastest choice only on an idle machine: with one other busy process on two
cores, a teacher trained with two torch threads ran 13x slower than with one, because the
threads wait for each other at every operation while the other process holds a core. So
``auto`` takes the cores this process may use and leaves out the ones the 1-minute load
average says are busy (:func:`choose_threads`); the build prints the decision as one line::

    threads: 1 (2 cores, load 1.3 -> 1 thread; override with --set threads=N)

An ``OMP_NUM_THREADS`` in the environment (``torchrun`` sets it for its workers) is taken as
it is. Torch-free: the same count is given to onnxruntime's sessions.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

__all__ = ["ThreadChoice", "choose_threads", "resolve_threads"]

OVERRIDE = "--set threads=N"


def choose_threads(cores: int, load: float | None, *, machine_cores: int | None = None) -> int:
    """Threads for a process that may use ``cores`` cores while the machine's 1-minute load
    average is ``load``.

    The load counts runnable tasks on the whole machine (``machine_cores`` cores, default
    ``cores``), so ``machine_cores - load`` cores are free; ``auto`` uses as many of its own
    cores as are free, rounded to the nearest whole core, and at least one::

        threads = max(1, min(cores, round(machine_cores - load)))

    e.g. 2 cores at load 1.3: ``round(0.7) = 1``; 8 cores at load 2.6: ``round(5.4) = 5``;
    2 of 64 cores at load 30: 2. Without a load average (Windows) every core is used.

    Parameters
    ----------
    cores : int
        The cores this process may run on (its CPU affinity).
    load : float or None
        The 1-minute load average (``os.getloadavg()[0]``), None where there is none.
    machine_cores : int, optional
        The machine's cores, which the load average is spread over (default ``cores``).
    """
    cores = max(1, int(cores))
    if load is None or not math.isfinite(load):
        return cores
    free = (machine_cores or cores) - max(0.0, load)
    return max(1, min(cores, math.floor(free + 0.5)))


@dataclass(frozen=True)
class ThreadChoice:
    """The build's thread count and the one line saying why."""

    count: int
    reason: str

    def line(self) -> str:
        return f"threads: {self.count} ({self.reason})"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def _machine() -> tuple[int, float | None, int]:
    """Cores, load and the machine's cores, read once per process: the builds of one process
    (a sweep's points) would otherwise count the previous build's own work as load."""
    cores = _cores()
    return cores, _load(), max(cores, os.cpu_count() or cores)


def resolve_threads(setting: int | str | None) -> ThreadChoice:
    """The recipe's ``threads`` (a number, or ``auto``/None) as a count for this machine."""
    if isinstance(setting, int):
        return ThreadChoice(setting, f"recipe threads: {setting}; 'auto' picks from cores and load")
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        return ThreadChoice(int(env), f"OMP_NUM_THREADS={env}; unset it for auto, or {OVERRIDE}")
    cores, load, machine_cores = _machine()
    count = choose_threads(cores, load, machine_cores=machine_cores)
    plural = "s" if count != 1 else ""
    if load is None:
        why = f"{cores} cores, no load average -> {count} thread{plural}"
    else:
        why = f"{cores} cores, load {load:.1f} -> {count} thread{plural}"
    return ThreadChoice(count, f"{why}; override with {OVERRIDE}")
