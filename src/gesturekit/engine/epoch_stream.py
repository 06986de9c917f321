"""A DataLoader whose workers run on from one epoch into the next (Ultralytics' ``InfiniteDataLoader`` idea).

A plain DataLoader ends each epoch's iterator, so its workers idle until the next epoch asks for its first batch,
then each builds a whole batch before the first arrives. The detector's epochs are short (30 batches of 64 at 448
pixels): training v1 on an H200 (workflows/gesture-gpu.yaml), each epoch's first 5 batches took 3.1 s, its other 25
another 3.1 s. Here one worker iterator lives as long as the loader and walks the sampler pass after pass; an
epoch is the next ``len(loader)`` batches of that stream, so the workers prefetch the next epoch's batches while
this one trains and validates.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import BatchSampler, DataLoader


class _Passes:
    """Yields the batch sampler's batches pass after pass; each pass first tells a sampler with ``set_epoch``
    (the DistributedSampler's shuffle seed) its epoch, so ranks agree whichever epoch the workers are ahead in."""

    def __init__(self, batch_sampler: BatchSampler) -> None:
        self.batch_sampler = batch_sampler
        self.first_epoch = 0

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.first_epoch
        while True:
            set_epoch = getattr(self.batch_sampler.sampler, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)
            yield from self.batch_sampler
            epoch += 1


class EpochStreamLoader(DataLoader):
    """A DataLoader of one endless batch stream; iterating it gives the next epoch, ``len(self)`` batches
    (a DataLoader's length is its batch sampler's: one pass)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # DataLoader forbids setting batch_sampler after construction; the passes keep its length and batches
        object.__setattr__(self, "batch_sampler", _Passes(self.batch_sampler))
        self._stream: Iterator[Any] | None = None

    def set_epoch(self, epoch: int) -> None:
        """The epoch the stream starts at (a resumed run's); later passes count on from it by themselves."""
        if self._stream is None:
            self.batch_sampler.first_epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        if self._stream is None:
            self._stream = super().__iter__()
        for _ in range(len(self)):
            yield next(self._stream)
