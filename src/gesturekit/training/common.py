"""Pieces shared by the detector and classifier trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from gesturekit.engine.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from gesturekit.engine.trainer import SUMMARY_FILE
from gesturekit.io import atomic_write_json
from gesturekit.models.pretrained import load_matching, read_state_dict

console = Console(stderr=True)


def load_initial_weights(model: nn.Module, pretrained_model_file: Path | None, is_main: bool) -> None:
    """Initialise from a user checkpoint (TAO's ``pretrained_model_file``) and report what matched."""
    if pretrained_model_file is None:
        return
    report = load_matching(model, read_state_dict(pretrained_model_file), str(pretrained_model_file))
    if is_main:
        console.print(report.summary())


def report_backbone(model: nn.Module, is_main: bool) -> None:
    report = getattr(getattr(model, "backbone", None), "load_report", None)
    if report is not None and is_main:
        console.print(report.summary())


def maybe_prepare_qat(model: nn.Module, enable_qat: bool) -> nn.Module:
    """Insert fake-quantisation for quantisation-aware training when the spec asks for it."""
    if not enable_qat:
        return model
    from gesturekit.optimize.quantize import prepare_qat

    return prepare_qat(model)


def arch_kwargs_without_pretrained(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "pretrained"}


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
