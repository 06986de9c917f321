"""Turn a training run into a zoo entry: slim checkpoint, FP32 ONNX, spec and training summary."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from gesturekit.engine.checkpoint import load_checkpoint, save_checkpoint
from gesturekit.export.onnx import check_parity, export_onnx
from gesturekit.io import atomic_write_json
from gesturekit.models.zoo import CHECKPOINT, ONNX, SPEC, SUMMARY
from gesturekit.optimize.restore import load_model_from_checkpoint

_KEEP = ("model", "metadata", "epoch", "best_metric", "spec", "version")


def package_model(checkpoint: Path, out_dir: Path, spec: Path | None = None,
                  summary: dict[str, Any] | None = None, half_weights: bool = True) -> dict[str, float]:
    """Write ``out_dir/{model.pt, model.onnx, spec.yaml, train_summary.json}``.

    The checkpoint keeps weights and metadata only (FP16 tensors when ``half_weights``: the zoo
    stays a few MB; loading casts them back), the training summary goes into its metadata, and
    the ONNX export is checked against PyTorch on random inputs. Returns the parity report.
    """
    state = load_checkpoint(checkpoint)
    slim = {k: state[k] for k in _KEEP if k in state}
    if summary is not None:
        slim["metadata"] = {**slim.get("metadata", {}), "training": summary}
    if half_weights:
        slim["model"] = {k: v.half() if v.is_floating_point() else v for k, v in slim["model"].items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_dir / CHECKPOINT, slim)
    model = load_model_from_checkpoint(out_dir / CHECKPOINT)
    size = int(model.metadata["input_size"])
    example = torch.randn(2, 3, size, size) if model.metadata["task"] == "classification" \
        else torch.randn(2, 3, size * 3 // 4, size)
    export_onnx(model, out_dir / ONNX, example)
    if spec is not None:
        shutil.copyfile(spec, out_dir / SPEC)
    if summary is not None:
        atomic_write_json(out_dir / SUMMARY, summary)
    return check_parity(model, out_dir / ONNX, example)
