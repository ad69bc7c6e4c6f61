"""The order rows are trained in: a seeded permutation per epoch, sharded across processes.

A function of (seed, epoch) only, so a run resumed mid-epoch sees the same remaining rows as an
uninterrupted one (`loop.py`'s exact resume).
"""

from __future__ import annotations

import torch

_SEED_MOD = 2**63 - 1  # torch generator seeds are 64-bit


class EpochSampler(torch.utils.data.Sampler[int]):
    """Seeded per-epoch permutation, sharded across processes, able to start mid-epoch.

    The order of epoch ``e`` depends only on ``(seed, e)``, so resuming at any batch gives the
    same remaining order as an uninterrupted run. Each process takes every ``world``-th index.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, world: int = 1, rank: int = 0, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.world, self.rank, self.shuffle = n, batch_size, seed, world, rank, shuffle
        self.per_rank = n // world
        if self.per_rank == 0:
            raise ValueError(f"{n} rows cannot be split across {world} processes")
        self.drop_last = self.per_rank >= batch_size
        self.epoch, self.start = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.per_rank // self.batch_size if self.drop_last else 1

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start_batch) * self.batch_size

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 7919 + self.epoch) % _SEED_MOD)
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        mine = perm[self.rank::self.world][: self.per_rank]
        if self.drop_last:
            mine = mine[: self.batches_per_epoch * self.batch_size]
        return mine

    def __iter__(self):
        return iter(self._order()[self.start:])

    def __len__(self) -> int:
        return len(self._order()) - self.start


__all__ = ["EpochSampler"]
