"""``threads: auto``: the decision from cores and load, the line it prints, the recipe key."""

from __future__ import annotations

import pytest

from edgekd import threads
from edgekd.errors import EdgeKDError
from edgekd.recipe import load_recipe
from edgekd.threads import choose_threads, resolve_threads


@pytest.mark.parametrize(
    ("cores", "load", "machine", "expected"),
    [
        (2, 0.0, None, 2),  # idle: every core
        (2, 0.4, None, 2),  # 2 - 0.4 = 1.6 free, rounds to 2
        (2, 1.3, None, 1),  # the machine: 0.7 free -> 1
        (2, 1.0, None, 1),  # one other busy process: one core left
        (2, 3.7, None, 1),  # more load than cores: still one thread
        (8, 2.6, None, 5),  # 5.4 free -> 5
        (8, 2.5, None, 6),  # 5.5 free rounds up, not to even
        (2, 30.0, 64, 2),  # 2 allowed cores of a 64-core machine at load 30: 34 free, ours are 2
        (4, 62.0, 64, 2),  # 2 free on the machine: 2 of our 4
        (2, None, None, 2),  # no load average (Windows): every core
    ],
)
def test_choose_threads_hand_worked(cores, load, machine, expected):
    assert choose_threads(cores, load, machine_cores=machine) == expected


def _machine(monkeypatch, cores: int, load: float | None, machine_cores: int | None = None) -> None:
    monkeypatch.setattr(threads, "_machine", lambda: (cores, load, machine_cores or cores))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_auto_line_names_cores_load_count_and_the_override(monkeypatch):
    _machine(monkeypatch, 2, 1.3)
    choice = resolve_threads("auto")
    assert choice.count == 1
    assert choice.line() == "threads: 1 (2 cores, load 1.3 -> 1 thread; override with --set threads=N)"
    _machine(monkeypatch, 8, 0.2)
    assert resolve_threads(None).line() == (
        "threads: 8 (8 cores, load 0.2 -> 8 threads; override with --set threads=N)"
    )


def test_a_number_and_omp_num_threads_win_over_auto(monkeypatch):
    _machine(monkeypatch, 8, 0.0)
    assert resolve_threads(3).count == 3
    assert "recipe threads: 3" in resolve_threads(3).line()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun sets for its workers
    assert resolve_threads("auto").count == 1
    assert resolve_threads(4).count == 4  # the recipe's number is the user's word


def test_machine_is_read_once_per_process(monkeypatch):
    """A sweep's next point must not count the previous point's own work as load."""
    loads = iter([0.0, 2.0])
    threads._machine.cache_clear()
    monkeypatch.setattr(threads, "_load", lambda: next(loads))
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert resolve_threads("auto").count == resolve_threads("auto").count
    finally:
        threads._machine.cache_clear()


def test_recipe_threads_default_auto_and_bad_values(tiny_recipe):
    assert load_recipe(tiny_recipe, ["threads=auto"]).threads == "auto"
    assert load_recipe(tiny_recipe, ["threads=3"]).threads == 3
    assert load_recipe(tiny_recipe, ["threads=null"]).threads == "auto"  # older recipes' default
    for bad in ("0", "fast", "1.5", "true"):
        with pytest.raises(EdgeKDError) as err:
            load_recipe(tiny_recipe, [f"threads={bad}"])
        message = str(err.value)
        assert len(message.splitlines()) == 1
        assert "threads = " in message and "must be auto or a whole number of threads" in message
