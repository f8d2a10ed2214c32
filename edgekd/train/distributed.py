"""Training under ``torchrun`` (PyTorch DistributedDataParallel), and nothing when not.

    torchrun --nproc_per_node 2 -m edgekd build recipe.yaml
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
             --nproc_per_node 4 -m edgekd build recipe.yaml

:func:`init_distributed` reads torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group: NCCL when CUDA is
available, gloo on CPU. Without those variables it returns a single-process :class:`Dist` and
``edgekd build`` runs exactly as before, with no process group.

Conventions every stage follows:

* a recipe's ``batch_size`` is the *global* batch: each of ``N`` ranks takes ``batch_size / N``
  images per step, so the optimisation (steps per epoch, learning-rate schedule) does not depend
  on ``N`` and a build can be resumed with another ``N``;
* each epoch's images are split across ranks by a :class:`~torch.utils.data.DistributedSampler`
  seeded from the recipe and re-shuffled with ``set_epoch``;
* only rank 0 writes (checkpoints, logs, teacher outputs, exports, the card, the bundle); the
  other ranks wait at a barrier and read what it wrote;
* a crash on any rank makes torchrun stop the others: the build ends with that rank's error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as torch_dist

from edgekd.errors import EdgeKDError

__all__ = ["Dist", "init_distributed", "rank_indices", "SINGLE"]

# How long a rank waits in a collective before giving up (a peer that died without torchrun
# noticing): long enough for rank 0 to export and evaluate while the others wait.
_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (identity in a single process)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(
            values, dtype=torch.float64, device=self.device if torch_dist.get_backend() == "nccl" else "cpu"
        )
        torch_dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Dist()


def init_distributed() -> Dist:
    """Join torchrun's process group when its environment says so; otherwise :data:`SINGLE`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    if torch_dist.is_initialized():
        return Dist(
            torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    torch_dist.init_process_group(backend=backend, timeout=_TIMEOUT)
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), local_rank)


def rank_indices(
    n: int, *, epoch: int, seed: int, dist: Dist, batch_size: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """The order in which this rank visits an epoch's ``n`` training images.

    One process: a permutation seeded from ``(seed, epoch)``. Under torchrun: this rank's share of
    a :class:`~torch.utils.data.DistributedSampler` (shuffled, seeded, ``set_epoch``, ``n`` rounded
    down to a multiple of the ranks), so ranks see disjoint images and together one epoch.

    With ``weights`` (reweighing), ``n`` draws with replacement, image ``i`` with probability
    ``weights[i] / sum(weights)``, the same draws on every rank, which takes every
    ``world_size``-th from its rank on.
    """
    if dist.enabled and batch_size % dist.world_size:
        raise EdgeKDError(
            f"batch_size {batch_size} is the global batch and must divide evenly over the "
            f"{dist.world_size} processes of torchrun; use a multiple of {dist.world_size}"
        )
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        drawn = np.random.default_rng([seed, epoch, 1]).choice(n, size=n, p=weights / weights.sum())
        usable = n - n % dist.world_size
        return drawn[dist.rank : usable : dist.world_size] if dist.enabled else drawn
    if not dist.enabled:
        return np.random.default_rng([seed, epoch]).permutation(n)
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n), num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)
