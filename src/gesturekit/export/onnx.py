"""FP32 ONNX export of a model's ``export_forward``, with its metadata and a parity check.

Inputs and outputs follow docs/ARCHITECTURE.md: input ``images`` [B,3,H,W]; a detector gives
``boxes`` [B,N,4] and ``scores`` [B,N,C] (batch, height and width are dynamic: it is fully
convolutional), a classifier gives ``probs`` [B,K] (batch is dynamic).
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import gesturekit
from gesturekit.io import atomic_write_bytes
from gesturekit.models.metadata import ONNX_KEY, check_metadata

OUTPUTS = {"detection": ("boxes", "scores"), "classification": ("probs",)}
BOX_OUTPUT = "boxes"
"""The second output of a classifier with a box head (a hand verifier that refines boxes)."""


class _ExportForward(nn.Module):
    """Exposes ``model.export_forward`` as ``forward`` for the exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        return self.model.export_forward(images)


def output_names(model: nn.Module, task: str) -> list[str]:
    """The ONNX outputs of ``model``: ``OUTPUTS[task]``, plus ``boxes`` for a classifier with a box head."""
    extra = [BOX_OUTPUT] if task == "classification" and getattr(model, "box_head", None) is not None else []
    return [*OUTPUTS[task], *extra]


def _dynamic_axes(task: str, outputs: list[str]) -> dict[str, dict[int, str]]:
    if task == "detection":
        return {"images": {0: "batch", 2: "height", 3: "width"},
                "boxes": {0: "batch", 1: "candidates"}, "scores": {0: "batch", 1: "candidates"}}
    return {"images": {0: "batch"}, **{name: {0: "batch"} for name in outputs}}


def export_onnx(model: nn.Module, out_path: str | Path, example: torch.Tensor, opset: int = 17) -> Path:
    """Export ``model.export_forward`` to ONNX (FP32) with ``model.metadata`` embedded.

    The model is put in eval mode and exported on its device; the file is written atomically.

    Args:
        model: a gesturekit model with ``export_forward`` and ``metadata`` (``models/metadata.py``).
        out_path: the ``.onnx`` file to write.
        example: a float32 input [B,3,H,W] used for tracing.
        opset: ONNX opset version.

    Returns:
        ``out_path``.
    """
    meta = check_metadata(getattr(model, "metadata", None), "model")
    task = meta["task"]
    outputs = output_names(model, task)
    wrapper = _ExportForward(model).eval()  # the exporter restores the wrapper's mode on every submodule
    device = next(model.parameters()).device
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is chosen on purpose
        torch.onnx.export(
            wrapper, (example.to(device=device, dtype=torch.float32),), buffer,
            input_names=["images"], output_names=outputs, dynamic_axes=_dynamic_axes(task, outputs),
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name, proto.producer_version = "gesturekit", gesturekit.__version__
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_KEY, json.dumps(meta)
    onnx.checker.check_model(proto)
    return atomic_write_bytes(out_path, proto.SerializeToString())


def _outputs(model: nn.Module | ort.InferenceSession, images: torch.Tensor) -> list[np.ndarray]:
    """Every output of a model's ``export_forward`` or of an ONNX Runtime session on ``images``."""
    if isinstance(model, ort.InferenceSession):
        return model.run(None, {"images": images.detach().float().cpu().numpy()})
    device = next(model.parameters()).device
    with torch.inference_mode():
        outputs = model.export_forward(images.to(device=device, dtype=torch.float32))
    return [t.float().cpu().numpy() for t in ((outputs,) if isinstance(outputs, torch.Tensor) else outputs)]


def check_parity(reference: nn.Module | str | Path, onnx_path: str | Path,
                 images: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, float]:
    """Run ``reference`` (a model, or the ONNX file the exported one was converted from) and the ONNX
    file (onnxruntime, CPU) on ``images`` [B,3,H,W] (or several such batches) and compare.

    Returns:
        ``{output name: max absolute difference}`` over every batch.
    """
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if isinstance(reference, nn.Module):
        reference.eval()
    else:
        reference = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst = dict.fromkeys(names, 0.0)
    for batch in [images] if isinstance(images, torch.Tensor) else images:
        for name, got, expected in zip(names, _outputs(session, batch), _outputs(reference, batch)):
            worst[name] = max(worst[name], float(np.abs(got - expected).max(initial=0.0)))
    return worst
