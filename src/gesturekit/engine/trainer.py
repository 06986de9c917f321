"""``fit``: the training driver shared by the detector and the classifier.

It knows no architecture: it builds the optimizer, the per-iteration soft-start annealing
schedule and the fp16 GradScaler, wraps the model in DDP when distributed, resumes from
``results_dir/last.pt``, validates through a callback and keeps ``best.pt``. With
``training.ema_decay`` it also keeps an exponential moving average of the weights (timm's ModelEma,
through ``torch.optim.swa_utils``), which is what it validates, saves as ``model`` and returns.

Regularisation: the spec's L1/L2 regulariser is added to the loss explicitly (over conv and
linear weights, TAO/Keras style) and both optimizers use ``weight_decay=0``, so AdamW and SGD
see the same objective and BN/bias parameters are never decayed.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

import gesturekit
from gesturekit.config.specs import Training
from gesturekit.engine.checkpoint import (
    BEST,
    LAST,
    SPEC,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_writes,
    save_checkpoint,
)
from gesturekit.engine.distributed import RuntimeContext, barrier, broadcast_object
from gesturekit.engine.logging import MetricLogger, ProgressBar
from gesturekit.engine.loop import autocast_dtype, train_one_epoch
from gesturekit.engine.schedule import build_scheduler
from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_json, atomic_write_text

SUMMARY_FILE = "train_summary.json"

Validate = Callable[[nn.Module, RuntimeContext], dict[str, float]]


def build_optimizer(model: nn.Module, spec: Training) -> Optimizer:
    """AdamW or SGD (momentum 0.9) over the trainable parameters, ``lr=max_learning_rate``,
    ``weight_decay=0`` (the regulariser is in the loss)."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr = spec.learning_rate.max_learning_rate
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def plain(obj: Any) -> Any:
    """A JSON round trip: pydantic models, Paths and tuples become dicts, strings and lists,
    which ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return json.loads(json.dumps(obj, default=str))


def device_name(device: torch.device) -> str:
    """A readable name of the training device (the GPU model, or the CPU architecture)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def weight_average(model: nn.Module, decay: float | None, warmup: bool = False) -> AveragedModel | None:
    """An exponential moving average of ``model``'s parameters and buffers (BatchNorm statistics
    too), ``avg = d * avg + (1 - d) * w`` per ``update_parameters`` after the first (which copies
    ``w``); ``d`` is ``decay``, or with ``warmup`` ``min(decay, (1 + n) / (10 + n))`` at update
    ``n``. None without a decay."""
    if decay is None:
        return None

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        step = int(average.n_averaged)  # the CPU counter (AveragedModel's default device): no GPU sync a step
        get_ema_multi_avg_fn(min(decay, (1 + step) / (10 + step)) if warmup else decay)(averaged, current, updates)

    average = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    return average


def _resume(path: Path, model: nn.Module, optimizer: Optimizer, scheduler: Any,
            scaler: torch.amp.GradScaler | None, average: AveragedModel | None) -> dict[str, Any]:
    state = load_checkpoint(path)
    missing = [k for k in ("model", "optimizer", "scheduler", "epoch", "global_step") if k not in state]
    if missing:
        raise GesturekitError(f"{path}: checkpoint has no {missing[0]!r} (not a gesturekit training checkpoint)")
    try:
        model.load_state_dict(state.get("trained_model", state["model"]))
        if average is not None:  # the average goes on from its update count (one per iteration);
            average.module.load_state_dict(state["model"])  # a checkpoint without one starts it anew
            average.n_averaged.fill_(int(state["global_step"]) if "trained_model" in state else 1)
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise GesturekitError(f"{path}: checkpoint does not match this model ({str(exc).splitlines()[0]}); "
                              "use a new results directory") from None
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    return state


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    spec_training: Training,
    results_dir: str | Path,
    ctx: RuntimeContext,
    validate: Validate | None = None,
    metric_key: str = "ap50",
    spec_dict: Mapping[str, Any] | BaseModel | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``spec_training.epochs`` epochs, resuming from ``results_dir/last.pt``.

    Args:
        model: a model following the contract (train mode: ``model(images, targets)`` -> dict
            of scalar losses). It is moved to ``ctx.device``; the caller keeps the bare model
            (its weights are those of the last epoch when ``fit`` returns, or their average
            with ``ema_decay``).
        train_loader: batches ``(images, targets)``, e.g. from ``make_loader``.
        spec_training: the spec's ``training`` section.
        results_dir: receives ``last.pt``, ``best.pt``, ``spec.yaml``, ``metrics.jsonl``,
            ``tensorboard/`` and ``train_summary.json`` (main rank only).
        ctx: from ``init_runtime``.
        validate: called on every rank, under ``torch.no_grad`` with the bare model in eval
            mode, every ``validation_interval`` epochs and after the last one; returns metrics.
            The main rank's dict is logged and compared; a callback may shard the evaluation
            and gather, or evaluate on the main rank only and return ``{}`` elsewhere (the other
            ranks then wait in a collective, bounded by the process-group timeout).
        metric_key: the validation metric (higher is better) that selects ``best.pt``.
        spec_dict: the whole resolved spec (a pydantic spec or plain dict), saved in checkpoints
            and as ``spec.yaml``.
        metadata: stored in checkpoints; defaults to ``model.metadata`` when the model has one.

    Returns:
        The training summary, also written to ``results_dir/train_summary.json``.

    Raises:
        GesturekitError: a non-finite loss, an unreadable or mismatching ``last.pt``, or a
            validation result without ``metric_key``.
    """
    results_dir = Path(results_dir)
    spec = spec_training
    bare = model.to(ctx.device)
    spec_plain = plain(spec_dict) if spec_dict is not None else {"training": plain(spec)}
    meta = plain(metadata if metadata is not None else getattr(bare, "metadata", None))
    if ctx.is_main:
        results_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_writes(results_dir)
        atomic_write_text(results_dir / SPEC, yaml.safe_dump(spec_plain, sort_keys=False))

    optimizer = build_optimizer(bare, spec)
    iters_per_epoch = len(train_loader)
    if spec.max_iterations_per_epoch is not None:
        iters_per_epoch = min(iters_per_epoch, spec.max_iterations_per_epoch)
    if iters_per_epoch == 0:
        raise GesturekitError("training: the training loader yields no batch (empty dataset or "
                              "batch_size_per_gpu larger than the dataset with drop_last)")
    scheduler = build_scheduler(optimizer, spec.learning_rate, spec.epochs * iters_per_epoch)
    use_scaler = autocast_dtype(spec.precision, ctx.device) == torch.float16
    scaler = torch.amp.GradScaler(ctx.device.type) if use_scaler else None
    average = weight_average(bare, spec.ema_decay, spec.ema_warmup)
    evaluated = average.module if average is not None else bare  # what is validated and saved as "model"

    progress = ProgressBar(enabled=ctx.is_main)
    start_epoch, global_step, best_metric, best_epoch = 0, 0, None, None
    images_before, time_before = 0, 0.0
    resume_path = latest_checkpoint(results_dir)
    if resume_path is not None:
        state = _resume(resume_path, bare, optimizer, scheduler, scaler, average)
        start_epoch, global_step = int(state["epoch"]), int(state["global_step"])
        best_metric, best_epoch = state.get("best_metric"), state.get("best_epoch")
        images_before, time_before = int(state.get("images_seen", 0)), float(state.get("train_time_s", 0.0))
        progress.print(f"resuming from epoch {start_epoch} ({resume_path})")

    train_model: nn.Module = bare
    if ctx.distributed:
        train_model = DistributedDataParallel(
            bare, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=False,
        )

    run_start = time.perf_counter()
    images_seen, rates = images_before, []
    with MetricLogger(results_dir, enabled=ctx.is_main, resume_epoch=start_epoch) as logger, progress:
        for epoch in range(start_epoch, spec.epochs):
            done = epoch + 1
            epoch_start = time.perf_counter()
            progress.start(f"epoch {done}/{spec.epochs}", iters_per_epoch)
            stats = train_one_epoch(
                train_model, train_loader, optimizer, scheduler, scaler, ctx, epoch,
                spec.precision, spec.regularizer, progress, spec.max_iterations_per_epoch,
                after_step=None if average is None else lambda: average.update_parameters(bare),
            )
            progress.stop()
            global_step += stats["iterations"]
            images_seen += stats["images"]
            rates.append(stats["images_per_s"])

            val: dict[str, float] = {}
            improved = False
            if validate is not None and (done % spec.validation_interval == 0 or done == spec.epochs):
                evaluated.eval()
                with torch.no_grad():
                    val = broadcast_object({k: float(v) for k, v in validate(evaluated, ctx).items()})
                if metric_key not in val:
                    raise GesturekitError(f"validation returned no {metric_key!r} (got {sorted(val)})")
                if best_metric is None or val[metric_key] > best_metric:
                    best_metric, best_epoch, improved = val[metric_key], done, True

            train_time = time_before + time.perf_counter() - run_start
            if ctx.is_main and (improved or done % spec.checkpoint_interval == 0 or done == spec.epochs):
                state = {
                    "model": evaluated.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "epoch": done,
                    "global_step": global_step,
                    "best_metric": best_metric,
                    "best_epoch": best_epoch,
                    "metric_key": metric_key,
                    "images_seen": images_seen,
                    "train_time_s": train_time,
                    "spec": spec_plain,
                    "metadata": meta,
                    "version": gesturekit.__version__,
                }
                if average is not None:
                    state["trained_model"] = bare.state_dict()
                if improved:
                    save_checkpoint(results_dir / BEST, state)
                save_checkpoint(results_dir / LAST, state)  # also on improvement: keeps best_metric consistent

            record = {
                "epoch": done,
                "step": global_step,
                "lr": stats["lr"],
                "loss": stats["loss"],
                "images_per_s": stats["images_per_s"],
                "data_time_s": stats["data_time_s"],
                "compute_time_s": stats["compute_time_s"],
                "val": val,
                "epoch_time_s": time.perf_counter() - epoch_start,
                "train_time_s": train_time,
            }
            logger.log(record)
            val_text = "  ".join(f"{k} {v:.4f}" for k, v in val.items())
            progress.print(f"epoch {done}/{spec.epochs}  loss {stats['loss']['total']:.4f}  lr {stats['lr']:.2e}  "
                           f"{stats['images_per_s']:.1f} img/s  {val_text}".rstrip())

    summary = {
        "epochs": spec.epochs,
        "completed_epochs": max(start_epoch, spec.epochs),
        "resumed_from_epoch": start_epoch if resume_path is not None else None,
        "global_step": global_step,
        "batch_size_per_gpu": spec.batch_size_per_gpu,
        "world_size": ctx.world_size,
        "global_batch_size": spec.batch_size_per_gpu * ctx.world_size,
        "precision": spec.precision,
        "amp_dtype": str(autocast_dtype(spec.precision, ctx.device) or torch.float32).removeprefix("torch."),
        "optimizer": spec.optimizer,
        "images_seen": images_seen,
        "wall_time_s": time_before + time.perf_counter() - run_start,
        "images_per_s": sum(rates) / len(rates) if rates else None,
        "device": device_name(ctx.device),
        "metric_key": metric_key if validate is not None else None,
        "best_metric": best_metric,
        "best_epoch": best_epoch,
        "ema_decay": spec.ema_decay,
        "ema_warmup": spec.ema_warmup if spec.ema_decay is not None else None,
    }
    if average is not None:
        bare.load_state_dict(average.module.state_dict())
    if ctx.is_main:
        atomic_write_json(results_dir / SUMMARY_FILE, summary)
    barrier()
    return summary
