"""ONNX export at a numeric precision: FP32, FP16 or INT8 (QDQ), with the metadata kept.

- ``fp32``: ``export_onnx`` as is.
- ``fp16``: weights and activations in float16 (``onnxruntime.transformers.float16``, which ships
  with ONNX Runtime); the input ``images`` and the outputs stay float32, so every runtime feeds
  it like the FP32 model. For GPUs (TensorRT, ONNX Runtime CUDA); on CPU it is not faster.
- ``int8``: post-training calibration of the FP32 export (``export.ptq.calibrate_int8``):
  QDQ with per-channel weights; ``onnxruntime`` target for the CPU runtime, ``tensorrt`` for
  TensorRT's explicit quantization. The tensor ranges go to a JSON calibration cache that a later
  export reuses without images. A quantization-aware (QAT) model needs no calibration: its learned
  ranges are exported (``export.qdq.export_qat_onnx``), and only as ``int8``.

The gesturekit metadata gains ``precision`` (``fp16``/``int8``) and, for INT8, ``quantization``.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from onnxruntime.transformers.float16 import convert_float_to_float16
from torch import nn

from gesturekit.errors import GesturekitError
from gesturekit.export.onnx import export_onnx
from gesturekit.export.ptq import calibrate_int8
from gesturekit.export.qdq import export_qat_onnx
from gesturekit.io import atomic_write_bytes
from gesturekit.models.metadata import ONNX_KEY
from gesturekit.optimize.qat import Target

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
CACHE_SUFFIX = ".calib.json"


def default_calibration_cache(onnx_path: str | Path) -> Path:
    """The calibration cache written beside an INT8 export: ``model.onnx`` -> ``model.calib.json``."""
    path = Path(onnx_path)
    return path.with_name(path.stem + CACHE_SUFFIX)


def set_metadata(proto: onnx.ModelProto, extra: dict) -> None:
    """Merge ``extra`` into the gesturekit metadata JSON of ``proto`` (in place).

    Raises:
        GesturekitError: ``proto`` has no gesturekit metadata.
    """
    entry = next((p for p in proto.metadata_props if p.key == ONNX_KEY), None)
    if entry is None:
        raise GesturekitError(f"{proto.graph.name}: no gesturekit metadata to update")
    entry.value = json.dumps({**json.loads(entry.value), **extra})


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so that every node follows the producers of its inputs (in place).

    The float16 converter appends its input/output ``Cast`` nodes at the end of the graph, which
    ONNX Runtime accepts but the ONNX checker and TensorRT's parser do not.
    """
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    waiting = [{producer[name] for name in node.input if name in producer} for node in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for i, deps in enumerate(waiting):
        for dep in deps:
            users[dep].append(i)
    ready = deque(i for i, deps in enumerate(waiting) if not deps)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for user in users[i]:
            waiting[user].discard(i)
            if not waiting[user]:
                ready.append(user)
    if len(order) != len(nodes):
        raise GesturekitError(f"{graph.name}: the graph has a cycle")
    graph.ClearField("node")
    graph.node.extend(nodes[i] for i in order)


def convert_fp16(onnx_fp32_path: str | Path, out_path: str | Path) -> Path:
    """Convert an FP32 gesturekit ONNX model to FP16 with float32 inputs and outputs.

    Returns:
        ``out_path`` (written atomically), metadata ``precision: fp16``.
    """
    proto = onnx.load(str(onnx_fp32_path))
    half = convert_float_to_float16(proto, keep_io_types=True)
    sort_topologically(half.graph)
    set_metadata(half, {"precision": "fp16"})
    onnx.checker.check_model(half)
    return atomic_write_bytes(out_path, half.SerializeToString())


def quantize_int8(onnx_fp32_path: str | Path, out_path: str | Path, images: Iterable[np.ndarray] | None,
                  cache_path: str | Path, target: Target = "onnxruntime") -> Path:
    """INT8 QDQ model calibrated on ``images`` (float32 [1,3,H,W] each, preprocessed as at runtime),
    whose ranges are written to ``cache_path``, or (``images`` None) on the ranges of ``cache_path``.

    Returns:
        ``out_path``, metadata ``precision: int8`` and ``quantization`` (mode, target, cache name).
    """
    calibrate_int8(onnx_fp32_path, out_path, images, cache_path, target=target)
    proto = onnx.load(str(out_path))
    set_metadata(proto, {"precision": "int8"})
    return atomic_write_bytes(out_path, proto.SerializeToString())


def export_precision(
    model: nn.Module,
    out_path: str | Path,
    example: torch.Tensor,
    precision: Precision = "fp32",
    calibration: Iterable[np.ndarray] | None = None,
    cache_path: str | Path | None = None,
    target: Target = "onnxruntime",
    opset: int = 17,
) -> Path:
    """Export ``model`` to ONNX at ``precision`` (see the module docstring).

    Args:
        model: a gesturekit model (``export_forward``, ``metadata``).
        out_path: the ``.onnx`` file to write.
        example: float32 [1,3,H,W] input for tracing.
        calibration: INT8 only: calibration inputs (see ``quantize_int8``); unused for a QAT model.
        cache_path: INT8 only: the calibration cache; default ``default_calibration_cache(out_path)``.
        target: INT8 only: ``onnxruntime`` or ``tensorrt``.
        opset: ONNX opset version.

    Returns:
        ``out_path``.

    Raises:
        GesturekitError: an unknown precision, or a QAT model at a precision other than int8.
    """
    if precision not in PRECISIONS:
        raise GesturekitError(f"precision: unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if (getattr(model, "metadata", None) or {}).get("qat"):
        if precision != "int8":
            raise GesturekitError("a quantization-aware (QAT) model exports as int8 only (its fake quantization "
                                  "becomes QDQ)")
        return export_qat_onnx(model, out_path, example)
    if precision == "fp32":
        return export_onnx(model, out_path, example, opset)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", example, opset)
        if precision == "fp16":
            return convert_fp16(fp32, out_path)
        cache = default_calibration_cache(out_path) if cache_path is None else cache_path
        return quantize_int8(fp32, out_path, calibration, cache, target)
