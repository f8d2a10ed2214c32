"""What every stage of one build is given besides the recipe and the data, and how a stage
reports a step that takes a while (:func:`step`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.train.distributed import Dist

__all__ = ["BuildContext", "EpochHook", "Log", "step"]

EpochHook = Callable[[str, int, dict], None]  # (stage, epoch, record) after every training epoch
Log = Callable[[str], None]


class step:
    """Say what starts, and when it ends how long it took: no step of a build is silent::

        with step(log, "evaluating student on 800 test images") as s:
            ...
            s.result = "top-1 0.8125"        # optional, said on the closing line

    logs ``evaluating student on 800 test images ...`` and then
    ``evaluating student on 800 test images: top-1 0.8125 (3.1 s)``. A step that fails says
    nothing more: the error is the next line.
    """

    def __init__(self, log: Log, what: str) -> None:
        self.log, self.what, self.result = log, what, "done"

    def __enter__(self) -> step:
        self.log(f"{self.what} ...")
        self.start = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.log(f"{self.what}: {self.result} ({time.perf_counter() - self.start:.1f} s)")


@dataclass
class BuildContext:
    """Where a build reports progress (``log``), the hook called after every training epoch
    (``on_epoch_end``: tests interrupt a build with it), the process group it trains in
    (``dist``: one process, or this rank of a ``torchrun`` job; rank 0 alone writes) and the
    CPU threads of torch and onnxruntime (``threads``: the recipe's, ``auto`` resolved by
    :func:`edgekd.threads.resolve_threads`)."""

    log: Log
    dist: Dist
    on_epoch_end: EpochHook | None = None
    threads: int | None = None

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def step(self, what: str) -> step:
        """:func:`step` on this build's log."""
        return step(self.log, what)
