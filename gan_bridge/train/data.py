"""Data for the training loop: resumable, world-size-aware batches of a map-style dataset.

The global sample stream is a pure function of ``(seed, position)``: epoch ``e`` visits the dataset in the
order of a permutation seeded by ``(seed, e)``. Global batch ``s`` is stream items
``[s * G, (s + 1) * G)`` (``G`` = global batch size), and process ``rank`` takes its contiguous slice of
``G / world_size`` items. So the batch of step ``s`` depends neither on the number of processes nor on
where the run was resumed.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .distributed import DistInfo


def per_process_batch(global_batch: int, world_size: int) -> int:
    """The batch each of ``world_size`` processes runs for a step of ``global_batch`` samples."""
    if global_batch < 1:
        raise ValueError(f"batch_size must be positive, got {global_batch}")
    if global_batch % world_size:
        raise ValueError(f"batch_size {global_batch} is not divisible by the {world_size} processes; "
                         f"use a multiple of {world_size}")
    return global_batch // world_size


class ShardedBatchSampler:
    """Endless lists of dataset indices for one process, starting at global step ``start_step``.

    length: dataset size; batch_size: global samples per step; shuffle=False walks 0, 1, 2, ... .
    """

    def __init__(self, length: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, start_step: int = 0):
        if length < 1:
            raise ValueError("the dataset is empty; it needs at least one sample to train on")
        self.length, self.global_batch = int(length), int(batch_size)
        self.local_batch = per_process_batch(self.global_batch, world_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self.step = int(start_step)
        self._epoch, self._order = -1, None

    def _item(self, position: int) -> int:
        epoch, offset = divmod(position, self.length)
        if not self.shuffle:
            return offset
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2 ** 63)
            self._epoch, self._order = epoch, torch.randperm(self.length, generator=gen)
        return int(self._order[offset])

    def indices(self, step: int) -> list[int]:
        """This process's indices for global step ``step``."""
        start = step * self.global_batch + self.rank * self.local_batch
        return [self._item(p) for p in range(start, start + self.local_batch)]

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            out = self.indices(self.step)
            self.step += 1
            yield out

    def state_dict(self) -> dict:
        return {"step": self.step}


def sharded_loader(dataset: Dataset, batch_size: int, info: DistInfo, seed: int, start_step: int = 0,
                   num_workers: int = 0, shuffle: bool = True, collate_fn: Callable | None = None) -> DataLoader:
    """An endless DataLoader over ``dataset`` for this process, resuming at ``start_step``.

    batch_size: global samples per step. Workers are seeded from ``(seed, rank, start_step)``, not from the
    global generators, so creating the loader does not disturb training randomness; per-sample
    randomness should come from the index (as in ``gan_bridge.face.world``) for exact resumes.
    """
    sampler = ShardedBatchSampler(len(dataset), batch_size, info.rank, info.world_size, seed, shuffle, start_step)
    gen = torch.Generator().manual_seed((seed * 7919 + info.rank * 104729 + start_step) % 2 ** 63)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                      generator=gen, persistent_workers=num_workers > 0, pin_memory=info.device.type == "cuda")


__all__ = ["ShardedBatchSampler", "per_process_batch", "sharded_loader"]
