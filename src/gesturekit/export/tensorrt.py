"""TensorRT engines from gesturekit ONNX files (optional: needs the ``tensorrt`` package and a GPU).

An engine is built for one optimisation profile of the input ``images``: the smallest, the most
common (``opt``, what TensorRT tunes its kernels for) and the largest shape it accepts. FP16 sets
TensorRT's FP16 flag; an INT8 QDQ model (``tensorrt`` calibration target) builds as an explicit
precision INT8 engine, with FP16 allowed for the layers left in float.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gesturekit.data.transforms import PAD_STRIDE, pad_to_stride
from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_bytes

Shape = tuple[int, int, int, int]
TENSORRT_MISSING = ("TensorRT is not installed (`import tensorrt` failed): --engine needs it; "
                    "build the engine from the .onnx file where TensorRT is (e.g. trtexec --onnx=...)")


def tensorrt_available() -> bool:
    """Whether the ``tensorrt`` Python package can be imported."""
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        return False
    return True


def profile_shapes(meta: dict[str, Any], max_batch: int = 8) -> dict[str, Shape]:
    """``min``/``opt``/``max`` input shapes [B,3,H,W] of an engine for a model's metadata.

    Detector: any letterboxed frame (sides multiples of 32 up to the padded long side ``4/3 *
    input_size`` that ``frame_scale`` allows), tuned for one 4:3 landscape frame (640x480 ->
    [1,3,352,448] at input size 448). Classifier: its square
    input, batch 1 to ``max_batch``, tuned for batch 1.
    """
    if max_batch < 1:
        raise GesturekitError(f"max_batch: must be >= 1 (got {max_batch})")
    size = int(meta["input_size"])
    if meta["task"] != "detection":
        return {"min": (1, 3, size, size), "opt": (1, 3, size, size), "max": (max_batch, 3, size, size)}
    longest = pad_to_stride(size * 4 / 3)
    return {"min": (1, 3, PAD_STRIDE, PAD_STRIDE), "opt": (1, 3, pad_to_stride(size * 3 / 4), pad_to_stride(size)),
            "max": (max_batch, 3, longest, longest)}


def build_engine(onnx_path: str | Path, engine_path: str | Path, shapes: dict[str, Shape],
                 precision: str = "fp32", workspace_bytes: int = 1 << 30) -> Path:
    """Build and serialise a TensorRT engine for ``onnx_path`` (input ``images``).

    Args:
        shapes: ``profile_shapes`` output.
        precision: ``fp32``, ``fp16`` or ``int8`` (the precision of the ONNX file).
        workspace_bytes: TensorRT's workspace memory pool limit.

    Returns:
        ``engine_path`` (written atomically).

    Raises:
        GesturekitError: TensorRT is missing, cannot parse the model or fails to build it.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        raise GesturekitError(TENSORRT_MISSING) from None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # implied from TensorRT 10
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise GesturekitError(f"{onnx_path}: TensorRT cannot parse the model ({first})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    profile.set_shape("images", shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GesturekitError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    return atomic_write_bytes(engine_path, bytes(serialized))
