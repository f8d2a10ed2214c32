"""Training under torchrun (DDP over gloo on CPU): sharding, a two-process build, a crashing rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import EdgeKDError
from edgekd.train.distributed import Dist, rank_indices

TESTS = Path(__file__).parent


def test_ranks_see_disjoint_halves_of_each_epoch():
    for epoch in (0, 1):
        parts = [
            rank_indices(101, epoch=epoch, seed=3, dist=Dist(rank=r, world_size=2), batch_size=8)
            for r in (0, 1)
        ]
        assert len(parts[0]) == len(parts[1]) == 50  # 101 rounded down to a multiple of 2 ranks
        assert not set(parts[0]) & set(parts[1])
        assert set(parts[0]) | set(parts[1]) <= set(range(101))
    again = rank_indices(101, epoch=1, seed=3, dist=Dist(rank=0, world_size=2), batch_size=8)
    first = rank_indices(101, epoch=0, seed=3, dist=Dist(rank=0, world_size=2), batch_size=8)
    assert not np.array_equal(again, first)  # set_epoch reshuffles


def test_single_process_order_is_the_seeded_permutation():
    order = rank_indices(10, epoch=2, seed=5, dist=Dist(), batch_size=4)
    assert np.array_equal(order, np.random.default_rng([5, 2]).permutation(10))


def test_global_batch_must_divide_over_the_ranks():
    with pytest.raises(EdgeKDError, match="batch_size 33 is the global batch .* multiple of 2"):
        rank_indices(100, epoch=0, seed=0, dist=Dist(rank=0, world_size=2), batch_size=33)


def _torchrun(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.timeout(900)  # the torchrun build alone may take its 600 s under load
def test_two_process_build_writes_one_bundle_and_matches_single_process(tmp_path, tiny_recipe, tiny_build):
    done = _torchrun("-m", "edgekd", "build", str(tiny_recipe), "--out", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    bundle = tmp_path / "tiny" / "bundle"
    lines = done.stdout.splitlines()
    assert lines.count(f"bundle: {bundle}") == 1  # rank 0 reports; rank 1 stays quiet
    assert sum(line.startswith("threads: ") for line in lines) == 1
    card = json.loads((bundle / "card.json").read_text())
    history = json.loads((tmp_path / "tiny" / "stages" / "student" / "history.json").read_text())
    epoch_images = 256 // 32 * 32  # tiny.yaml: 256 images, global batch 32
    for record in history:
        assert record["world_size"] == 2
        assert record["samples_per_rank"] == epoch_images // 2
    single = tiny_build.card["models"]["student"]["metrics"]["top1"]
    distributed = card["models"]["student"]["metrics"]["top1"]
    # Same data, seed and global batch; per-rank BatchNorm statistics over 16 instead of 32
    # images and another sample order move a 2-epoch tiny model a little, not to another regime.
    assert abs(distributed - single) <= 0.15, (distributed, single)
    from edgekd.bundle import manifest_problems

    assert manifest_problems(bundle) == []


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path, tiny_recipe):
    started = time.monotonic()
    done = _torchrun(str(TESTS / "scripts" / "ddp_crash.py"), str(tiny_recipe), str(tmp_path), timeout=300)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert "rank 1 fails on purpose in teacher epoch 1" in done.stderr
    assert elapsed < 300
    assert not (tmp_path / "tiny" / "bundle").exists()
