"""Run under torchrun by tests/test_distributed.py: rank 1 raises after its first epoch."""

import os
import sys

from edgekd.pipeline import build


def crash_on_rank_1(stage: str, epoch: int, record: dict) -> None:
    if os.environ.get("RANK") == "1":
        raise RuntimeError(f"rank 1 fails on purpose in {stage} epoch {epoch}")


if __name__ == "__main__":
    build(sys.argv[1], out=sys.argv[2], log=print, on_epoch_end=crash_on_rank_1)
