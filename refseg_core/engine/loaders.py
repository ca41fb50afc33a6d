"""DataLoaders and samplers of training and evaluation (one definition, used by :mod:`refseg_core.engine.loop`,
:func:`refseg_core.engine.evaluation.evaluate` and the data-pipeline benchmark).

* :func:`make_loader` — a DataLoader over a :class:`~refseg_core.data.dataset.RefSegDataset` with
  :func:`~refseg_core.data.dataset.collate` batches (``image`` ``(B, 3, S, S)``, ``tokens`` ``(B, L)``,
  ``mask`` ``(B, 1, S, S)``, ``meta``), pinned memory on CUDA and seeded workers.
* :class:`SkipSampler` — a sampler with its first indices left out (resuming inside an epoch).
* :class:`Shard` — rank ``r``'s evaluation share of ``n`` samples, without padding.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class SkipSampler(Sampler):
    """The first ``skip`` indices of ``base`` left out (resuming in the middle of an epoch)."""

    def __init__(self, base: Sampler, skip: int):
        self.base, self.skip = base, skip

    def __iter__(self):
        it = iter(self.base)
        for _ in range(self.skip):
            next(it, None)
        yield from it

    def __len__(self):
        return max(0, len(self.base) - self.skip)

    def set_epoch(self, epoch):
        self.base.set_epoch(epoch)


class Shard(Sampler):
    """Evaluation shard of rank r: indices r, r + W, ... (no padding, so nothing is scored twice)."""

    def __init__(self, n: int, rank: int, world: int):
        self.idx = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.idx)

    def __len__(self):
        return len(self.idx)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: DataLoader seeds torch per worker; numpy and ``random`` follow from it."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    ds, batch_size: int, sampler: Sampler, num_workers: int, device: torch.device, drop_last: bool
) -> DataLoader:
    """The DataLoader every training and evaluation pass uses (collated batches, see the module docstring)."""
    from refseg_core.data.dataset import collate

    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )


__all__ = ["make_loader", "seed_worker", "Shard", "SkipSampler"]
