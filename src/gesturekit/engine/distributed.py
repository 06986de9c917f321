"""Process-group setup and small collective helpers (torchrun style: RANK, WORLD_SIZE, LOCAL_RANK).

The runtime state lives in a :class:`RuntimeContext` passed around explicitly; it never goes
into a spec. A single process (no torchrun) is the ``world_size == 1`` case of the same code.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gesturekit.engine.epoch_stream import EpochStreamLoader
from gesturekit.errors import GesturekitError


@dataclass(frozen=True)
class RuntimeContext:
    """Where this process runs and its place in the process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    is_main: bool = True
    distributed: bool = False


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise GesturekitError(f"environment variable {name}={value!r}: expected an integer") from None


def _resolve_device(device: str | None, local_rank: int, distributed: bool) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise GesturekitError(f"device {device!r}: not a torch device (use cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise GesturekitError(f"device {device!r}: CUDA is not available on this machine")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
        if resolved.index >= torch.cuda.device_count():
            raise GesturekitError(f"device {resolved}: only {torch.cuda.device_count()} CUDA device(s) visible")
        torch.cuda.set_device(resolved)
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_runtime(device: str | None = None, seed: int | None = None) -> RuntimeContext:
    """Read the torchrun environment, join the process group and pick this rank's device.

    Args:
        device: ``"cpu"``, ``"cuda"`` (each rank takes ``cuda:LOCAL_RANK``), ``"cuda:N"`` or
            None for CUDA when available, else CPU.
        seed: base seed; each rank is seeded with ``seed + rank`` so augmentations differ
            across ranks (DDP broadcasts rank 0's initial weights anyway).

    The backend is NCCL on CUDA and gloo on CPU; ``MASTER_ADDR``/``MASTER_PORT`` come from torchrun.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    distributed = world_size > 1
    resolved = _resolve_device(device, local_rank, distributed)
    if resolved.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed-size training inputs: pick the fastest kernels once
    if distributed and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size,
            device_id=resolved if resolved.type == "cuda" else None,
        )
    if seed is not None:
        seed_everything(seed + rank)
    return RuntimeContext(
        rank=rank, world_size=world_size, local_rank=local_rank, device=resolved,
        is_main=rank == 0, distributed=distributed,
    )


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def cleanup() -> None:
    """Leave the process group (no-op when not distributed)."""
    if _initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if _initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _collective_device() -> torch.device:
    if _initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_dict(values: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """Mean of each value across ranks (for logging: one all-reduce, then a host sync).

    Every rank must pass the same keys. Returns plain floats in the input key order.
    """
    keys = list(values)
    if not keys:
        return {}
    scalars = [v.detach().float().reshape(()) if isinstance(v, torch.Tensor) else torch.tensor(float(v))
               for v in values.values()]
    device = _collective_device() if _initialized() else scalars[0].device
    stacked = torch.stack([s.to(device) for s in scalars])
    if _initialized():
        dist.all_reduce(stacked)
        stacked = stacked / dist.get_world_size()
    return dict(zip(keys, stacked.tolist(), strict=True))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable values only; no-op when not distributed)."""
    if not _initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    collate_fn: Callable[[list[Any]], Any] | None,
    ctx: RuntimeContext,
    drop_last: bool = False,
) -> EpochStreamLoader:
    """A DataLoader of ``batch_size`` samples per rank, its workers running on from epoch to epoch
    (:class:`EpochStreamLoader`).

    Distributed runs shard with a :class:`DistributedSampler`, seeded by epoch; batches are pinned on CUDA.
    """
    sampler = None
    if ctx.distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, drop_last=drop_last,
        )
    return EpochStreamLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=ctx.device.type == "cuda",
        drop_last=drop_last,
    )
