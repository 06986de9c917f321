"""Pieces shared by the detector and classifier trainers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from gesturekit.config.specs import ModelSection, Training, source_splits
from gesturekit.data.transforms import keep_frame
from gesturekit.engine.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from gesturekit.engine.distributed import RuntimeContext, init_runtime, make_loader
from gesturekit.engine.trainer import SUMMARY_FILE, fit
from gesturekit.io import atomic_write_json
from gesturekit.models import create_model
from gesturekit.models.pretrained import load_matching, read_state_dict

console = Console(stderr=True)


def init_model(model_spec: ModelSection, kwargs: dict[str, Any], is_main: bool) -> nn.Module:
    """The model of a spec's ``model`` section, initialised as it says: a pruned graph to retrain
    (``load_graph``: the checkpoint's widths and weights, this spec's ``kwargs``), a user checkpoint
    (``pretrained_model_file``) or ImageNet weights. With ``pretrained``, backbone tensors that the checkpoint
    lacks (a deeper stage that this fine-tune adds) come from ImageNet rather than from random numbers."""
    if model_spec.load_graph:
        from gesturekit.optimize.restore import load_pruned_checkpoint

        return load_pruned_checkpoint(model_spec.pretrained_model_file, kwargs)
    use_imagenet = model_spec.pretrained and model_spec.pretrained_model_file is None
    model = create_model(model_spec.arch, pretrained=use_imagenet, **kwargs)
    report_backbone(model, is_main)
    missing = load_initial_weights(model, model_spec.pretrained_model_file, is_main)
    gaps = [name for name in missing if name.startswith("backbone.")]
    if gaps and model_spec.pretrained:
        imagenet = create_model(model_spec.arch, pretrained=True, **kwargs).state_dict()
        model.load_state_dict({name: imagenet[name] for name in gaps}, strict=False)
        if is_main:
            console.print(f"ImageNet weights for the {len(gaps)} backbone tensors the checkpoint lacks")
    return model


def with_metadata(model: nn.Module, metadata: dict[str, Any]) -> nn.Module:
    """Attach the metadata, keeping what a pruned model recorded (QAT is prepared by ``train_task``)."""
    model.metadata = {**getattr(model, "metadata", {}), **metadata}
    return model


def shard_loader(dataset: Dataset, batch_size: int, num_workers: int, ctx: RuntimeContext,
                 collate_fn: Callable | None = None) -> DataLoader:
    """This rank's share of a validation set (validation is sharded, then gathered)."""
    shard = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=min(num_workers, 4),
                      collate_fn=collate_fn)


def train_task(spec: Any, results_dir: Path, device: str | None, dataset_cls: type[Dataset],
               train_transform: Callable, val_transform: Callable, collate_fn: Callable | None,
               build: Callable[[Any, bool], nn.Module],
               make_validator: Callable[[Any, Dataset, RuntimeContext], Callable], metric_key: str,
               combine: Callable[[Dataset, Callable], Dataset] | None = None) -> dict[str, Any]:
    """Datasets from the spec, the model, then the shared engine's ``fit``; returns the summary.

    ``combine(frames, train_transform)``: the training set made from untransformed samples (each
    dataset's transform ``keep_frame``), for augmentations that mix samples (``data.mosaic``).
    """
    results_dir = Path(results_dir)
    ctx = init_runtime(device, seed=spec.training.seed)
    data, training = spec.dataset, spec.training
    train_sources = source_splits(data.train, data.train_split)
    frames = concat(dataset_cls, train_sources, data.classes, data.class_map,
                    train_transform if combine is None else keep_frame)
    train_set = frames if combine is None else combine(frames, train_transform)
    loader = make_loader(train_set, training.batch_size_per_gpu, training.num_workers, True, collate_fn, ctx,
                         drop_last=len(train_set) > training.batch_size_per_gpu)
    validate = None
    if data.val:
        val_set = concat(dataset_cls, source_splits(data.val, data.val_split), data.classes, data.class_map,
                         val_transform)
        validate = make_validator(spec, val_set, ctx)
    model = maybe_prepare_qat(build(spec, ctx.is_main), training)
    summary = fit(model, loader, training, results_dir, ctx, validate=validate, metric_key=metric_key,
                  spec_dict=spec)
    summary["dataset"] = {"train": [f"{p}:{split}" for p, split in train_sources], "train_images": len(train_set)}
    if ctx.is_main:
        record_training_summary(results_dir, summary)
    return summary


def load_initial_weights(model: nn.Module, pretrained_model_file: Path | None, is_main: bool) -> list[str]:
    """Initialise from a user checkpoint (TAO's ``pretrained_model_file``) and report what matched; returns the
    names of the model's tensors that the checkpoint did not give."""
    if pretrained_model_file is None:
        return []
    report = load_matching(model, read_state_dict(pretrained_model_file), str(pretrained_model_file))
    if is_main:
        console.print(report.summary())
    return report.missing


def report_backbone(model: nn.Module, is_main: bool) -> None:
    report = getattr(getattr(model, "backbone", None), "load_report", None)
    if report is not None and is_main:
        console.print(report.summary())


def maybe_prepare_qat(model: nn.Module, training: Training) -> nn.Module:
    """Insert fake quantisation for ``training.qat_target`` when ``training.enable_qat`` asks for it."""
    if not training.enable_qat:
        return model
    from gesturekit.optimize.qat import prepare_qat

    return prepare_qat(model, training.qat_target)


def all_gather_lists(items: list[Any], ctx_distributed: bool) -> list[Any]:
    """Concatenate per-rank lists on every rank (validation sharded across ranks)."""
    if not ctx_distributed:
        return items
    gathered: list[list[Any]] = [[] for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]


def record_training_summary(results_dir: Path, summary: dict[str, Any]) -> None:
    """Write the summary next to the run and into the metadata of ``best.pt`` and ``last.pt``,
    so a model card can be generated from the checkpoint alone."""
    atomic_write_json(results_dir / SUMMARY_FILE, summary)
    for name in (BEST, LAST):
        path = results_dir / name
        if path.is_file():
            state = load_checkpoint(path)
            state["metadata"] = {**(state.get("metadata") or {}), "training": summary}
            save_checkpoint(path, state)


def concat(dataset_cls: type[Dataset], sources: list[tuple[Path, str]], *args: Any) -> Dataset:
    """One dataset per ``(source, split)``, concatenated (a source may have its own split)."""
    parts = [dataset_cls([path], split, *args) for path, split in sources]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
