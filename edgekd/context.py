"""What every stage of one build is given besides the recipe and the data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.train.distributed import Dist

__all__ = ["BuildContext", "EpochHook"]

EpochHook = Callable[[str, int, dict], None]  # (stage, epoch, record) after every training epoch


@dataclass
class BuildContext:
    """Where a build reports progress (``log``), the hook called after every training epoch
    (``on_epoch_end``: tests interrupt a build with it) and the process group it trains in
    (``dist``: one process, or this rank of a ``torchrun`` job; rank 0 alone writes)."""

    log: Callable[[str], None]
    dist: Dist
    on_epoch_end: EpochHook | None = None

    @property
    def is_main(self) -> bool:
        return self.dist.is_main
