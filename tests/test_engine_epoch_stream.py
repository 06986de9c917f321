"""EpochStreamLoader: epochs as slices of one worker stream, each a full pass, seeded as a DataLoader's would be."""

from __future__ import annotations

import os
import time

import torch
from torch.utils.data import Dataset, DistributedSampler, TensorDataset

from gesturekit.engine.distributed import RuntimeContext, make_loader


class WorkerPids(Dataset):
    """Each sample is its index and the pid of the process that made it."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, os.getpid()


def _epoch(loader) -> list[tuple[list[int], list[int]]]:
    return [(indices.tolist(), pids.tolist()) for indices, pids in loader]


def test_each_epoch_is_one_shuffled_pass_from_the_same_workers() -> None:
    torch.manual_seed(0)
    loader = make_loader(WorkerPids(24), 4, 2, True, None, RuntimeContext(), drop_last=True)
    epochs = [_epoch(loader) for _ in range(3)]
    orders = [[i for indices, _ in epoch for i in indices] for epoch in epochs]
    assert all(sorted(order) == list(range(24)) for order in orders)  # every sample once per epoch
    assert len({tuple(order) for order in orders}) == 3  # reshuffled each pass
    pids = {pid for epoch in epochs for _, batch_pids in epoch for pid in batch_pids}
    assert len(pids) == 2 and os.getpid() not in pids  # two workers, never restarted between epochs


def test_short_last_batch_and_drop_last_keep_the_epoch_length() -> None:
    data = TensorDataset(torch.arange(10.0))
    kept = make_loader(data, 4, 0, False, None, RuntimeContext(), drop_last=False)
    dropped = make_loader(data, 4, 0, False, None, RuntimeContext(), drop_last=True)
    for _ in range(2):
        assert [len(batch) for (batch,) in kept] == [4, 4, 2]
        assert [batch.tolist() for (batch,) in dropped] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_workers_prefetch_the_next_epoch() -> None:
    """The next epoch's first batch is waiting when it is asked for (a plain DataLoader restarts its workers
    on each epoch and makes the first batch then)."""

    class Slow(Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, index: int) -> int:
            time.sleep(0.05)
            return index

    loader = make_loader(Slow(), 4, 2, False, None, RuntimeContext())
    list(loader)
    time.sleep(0.6)  # the workers make the next epoch's batches meanwhile
    start = time.perf_counter()
    first = next(iter(loader))
    assert first.tolist() == [0, 1, 2, 3]
    assert time.perf_counter() - start < 0.1  # a batch to make takes 4 x 0.05 s


def test_distributed_passes_are_seeded_by_epoch_from_a_resumed_start() -> None:
    data = TensorDataset(torch.arange(12.0))
    ranks = [RuntimeContext(rank=r, world_size=2, local_rank=r, is_main=r == 0, distributed=True) for r in (0, 1)]
    loaders = [make_loader(data, 3, 0, True, None, ctx) for ctx in ranks]
    for loader in loaders:
        loader.set_epoch(5)  # a run resumed at epoch 5
    for epoch in (5, 6, 7):
        got = [[int(v) for (batch,) in loader for v in batch] for loader in loaders]
        assert sorted(got[0] + got[1]) == list(range(12))  # the ranks share the pass
        for rank, seen in enumerate(got):
            reference = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True)
            reference.set_epoch(epoch)
            assert seen == list(reference)
