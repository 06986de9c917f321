"""One training epoch, torchvision ``references/detection`` style, for any model that follows the
contract: in train mode ``model(images, targets)`` returns a dict of scalar loss tensors.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from gesturekit.config.specs import Precision, Regularizer
from gesturekit.engine.distributed import RuntimeContext, reduce_dict
from gesturekit.engine.logging import ProgressBar
from gesturekit.errors import GesturekitError

WARMUP_ITERATIONS = 5
"""Iterations left out of the throughput figure (allocator, cuDNN autotuning, worker start-up)."""

_REGULARIZED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                nn.ConvTranspose3d)
_warned_cpu_fp16 = False


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32.

    CUDA: bf16 -> bfloat16 (no scaler), fp16 -> float16 (with a GradScaler). The CPU always
    runs fp32, with a one-time warning when fp16 was asked for.
    """
    global _warned_cpu_fp16
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "fp16" and not _warned_cpu_fp16:
            warnings.warn("training.precision fp16 needs CUDA; training in fp32 on the CPU", stacklevel=2)
            _warned_cpu_fp16 = True
        return None
    if precision == "bf16":
        if not torch.cuda.is_bf16_supported():
            raise GesturekitError(f"training.precision: bf16 is not supported on {torch.cuda.get_device_name(device)}"
                                  "; use fp16 or fp32")
        return torch.bfloat16
    return torch.float16


def regularized_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of every conv/linear layer that trains (no biases, no normalisation layers)."""
    return [m.weight for m in model.modules()
            if isinstance(m, _REGULARIZED) and m.weight is not None and m.weight.requires_grad]


def regularization_loss(weights: list[torch.Tensor], spec: Regularizer) -> torch.Tensor | None:
    """``weight * sum(|w|)`` (l1) or ``weight * sum(w**2)`` (l2) over ``weights``, in fp32; None if off."""
    if spec.type == "none" or spec.weight == 0 or not weights:
        return None
    order = 1 if spec.type == "l1" else 2
    norms = torch.stack(torch._foreach_norm([w.float() for w in weights], order))  # one fused kernel per dtype
    return spec.weight * (norms.sum() if order == 1 else norms.square().sum())


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors nested in lists, (named) tuples and dicts to ``device`` (non-blocking)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def batch_size_of(images: torch.Tensor | Iterable[torch.Tensor]) -> int:
    """Samples in a batch: ``images`` is a [B,3,H,W] tensor or a list of [3,H,W] tensors."""
    return images.shape[0] if isinstance(images, torch.Tensor) else len(images)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler | None,
    ctx: RuntimeContext,
    epoch: int,
    precision: Precision,
    regularizer: Regularizer,
    progress: ProgressBar | None = None,
    max_iterations: int | None = None,
    after_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for one pass over ``loader`` (or ``max_iterations`` batches).

    ``loader`` is a DataLoader (or any sized iterable) of ``(images, targets)`` batches.
    The total loss is the sum of the model's loss dict plus the regulariser; the scheduler is
    stepped every iteration, then ``after_step`` is called (e.g. to update a weight average).
    ``epoch`` is 0-based (it seeds the DistributedSampler shuffle).

    Returns:
        ``loss`` (dict of epoch means across ranks, including ``total`` and ``regularizer``),
        ``lr`` (after the last step), ``iterations``, ``images`` (seen by all ranks),
        ``images_per_s`` (all ranks, after the first ``WARMUP_ITERATIONS``), ``data_time_s``
        and ``compute_time_s`` (this rank's time waiting on the loader vs the rest).

    Raises:
        GesturekitError: the loss (mean across ranks) is not finite; every rank raises together.
    """
    model.train()
    # make_loader's stream takes the epoch it starts at; a plain DataLoader's DistributedSampler, each epoch
    set_epoch = getattr(loader, "set_epoch", None) or getattr(getattr(loader, "sampler", None), "set_epoch", None)
    if set_epoch is not None:
        set_epoch(epoch)
    device = ctx.device
    dtype = autocast_dtype(precision, device)
    weights = regularized_weights(model)
    total_iters = len(loader) if max_iterations is None else min(len(loader), max_iterations)
    warmup = min(WARMUP_ITERATIONS, total_iters // 2)

    sums: dict[str, float] = {}
    seen = seen_timed = 0  # this rank's samples
    data_time = compute_time = 0.0
    iterations = 0
    tick = timed_start = time.perf_counter()
    for images, targets in itertools.islice(loader, total_iters):
        fetched = time.perf_counter()
        data_time += fetched - tick
        images = to_device(images, device)
        targets = to_device(targets, device)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            loss_dict = model(images, targets)
        if not isinstance(loss_dict, Mapping) or not loss_dict:
            raise TypeError(f"model(images, targets) in train mode must return a dict of losses, "
                            f"got {type(loss_dict).__name__}")
        losses = {k: v.float() for k, v in loss_dict.items()}
        reg = regularization_loss(weights, regularizer)
        if reg is not None:
            losses["regularizer"] = reg
        loss = sum(losses.values())

        reduced = reduce_dict({k: v.detach() for k, v in losses.items()})
        reduced_total = sum(reduced.values())
        if not math.isfinite(reduced_total):
            detail = ", ".join(f"{k}={v:.4g}" for k, v in reduced.items())
            raise GesturekitError(f"epoch {epoch + 1} iteration {iterations + 1}: non-finite loss ({detail})")

        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step()

        for k, v in reduced.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["total"] = sums.get("total", 0.0) + reduced_total
        iterations += 1
        seen += batch_size_of(images)
        seen_timed += batch_size_of(images)
        if iterations == warmup:
            _sync(device)
            timed_start, seen_timed = time.perf_counter(), 0
        tick = time.perf_counter()
        compute_time += tick - fetched
        if progress is not None:
            elapsed = tick - timed_start
            rate = seen_timed * ctx.world_size / elapsed if iterations > warmup and elapsed > 0 else 0.0
            progress.update(reduced_total, optimizer.param_groups[0]["lr"], rate)

    _sync(device)
    elapsed = time.perf_counter() - timed_start
    # sums over ranks (the last batch of a rank's shard may be short)
    counts = {k: v * ctx.world_size for k, v in reduce_dict({"seen": seen, "timed": seen_timed}).items()}
    return {
        "loss": {k: v / max(iterations, 1) for k, v in sums.items()},
        "lr": optimizer.param_groups[0]["lr"],
        "iterations": iterations,
        "images": round(counts["seen"]),
        "images_per_s": counts["timed"] / elapsed if elapsed > 0 else 0.0,
        "data_time_s": data_time,
        "compute_time_s": compute_time,
    }
