"""Post-training INT8 calibration (PTQ) of an FP32 ONNX model into QDQ ONNX with ONNX Runtime's
``quantize_static``: no PyTorch model needed, and the calibrated ranges kept in a reusable JSON cache.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization import CalibrationMethod as OrtMethod
from onnxruntime.quantization.shape_inference import quant_pre_process

from gesturekit.errors import GesturekitError
from gesturekit.export.qdq import with_metadata
from gesturekit.io import atomic_write_bytes
from gesturekit.optimize.qat import Target, check_target, grids

CalibrationMethod = Literal["minmax", "entropy", "percentile"]
METHODS = {"minmax": OrtMethod.MinMax, "entropy": OrtMethod.Entropy, "percentile": OrtMethod.Percentile}


class _ImageReader(CalibrationDataReader):
    """Calibration inputs: preprocessed images [1,3,H,W] float32, checked one by one."""

    def __init__(self, input_name: str, images: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self.images: Iterator[np.ndarray] = iter(images)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self.images, None)
        if image is None:
            return None
        if not isinstance(image, np.ndarray) or image.ndim != 4 or image.shape[:2] != (1, 3) \
                or image.dtype != np.float32:
            raise GesturekitError(f"calibration image {self.count}: expected a float32 array [1,3,H,W], got "
                                  f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
        self.count += 1
        return {self.input_name: image}


def _feature_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes that feed a Conv/Gemm/MatMul: the quantized part of the network.

    The output layers and everything after them (sigmoid, box decoding, softmax) are not listed.
    """
    producers = {o: n for n in proto.graph.node for o in n.output}
    compute = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    feeding: set[str] = set()
    stack = [producers[i] for n in compute for i in n.input if i in producers]
    while stack:
        node = stack.pop()
        if node.name in feeding:
            continue
        feeding.add(node.name)
        stack.extend(producers[i] for i in node.input if i in producers)
    return [n.name for n in proto.graph.node if n.name in feeding]


def calibrate_int8(
    onnx_fp32_path: str | Path,
    out_path: str | Path,
    images: Iterable[np.ndarray] | None,
    cache_path: str | Path,
    target: Target = "onnxruntime",
    method: CalibrationMethod = "minmax",
) -> Path:
    """Post-training INT8 quantization of an FP32 ONNX model into QDQ ONNX (ONNX Runtime).

    Args:
        onnx_fp32_path: the FP32 model (``export_onnx``).
        out_path: the INT8 QDQ model to write; the gesturekit metadata is kept and gains
            ``quantization``.
        images: preprocessed calibration inputs, float32 [1,3,H,W] each (a few hundred real
            images is typical); None: the ranges of ``cache_path``.
        cache_path: JSON calibration cache (tensor ranges): read when ``images`` is None (no
            inference), else (re)written after calibrating on them.
        target: ``onnxruntime`` (U8S8, fast on CPU) or ``tensorrt`` (symmetric S8S8).
        method: ``minmax``, ``entropy`` or ``percentile`` (99.999) range calibration.

    Returns:
        ``out_path``.

    Raises:
        GesturekitError: missing model, bad calibration image, or no image and no cache.
    """
    src, out, cache = Path(onnx_fp32_path), Path(out_path), Path(cache_path)
    if not src.is_file():
        raise GesturekitError(f"{src}: ONNX model not found")
    check_target(target)
    if method not in METHODS:
        raise GesturekitError(f"method: unknown calibration method {method!r} (minmax, entropy or percentile)")
    original = onnx.load(str(src))
    reader = None
    if images is not None or not cache.is_file():
        reader = _ImageReader(original.graph.input[0].name, images if images is not None else ())
    symmetric = target == "tensorrt"
    with tempfile.TemporaryDirectory() as tmp:
        work, quantized = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        new_cache = Path(tmp) / "cache.json"
        quant_pre_process(original, str(work))
        try:
            quantize_static(
                str(work), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8, nodes_to_quantize=_feature_nodes(onnx.load(str(work))),
                calibrate_method=METHODS[method], calibration_cache_path=str(cache if reader is None else new_cache),
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
            )
        except (ValueError, RuntimeError) as exc:
            if reader is not None and reader.count == 0:
                raise GesturekitError(f"{cache}: no calibration cache and no calibration image") from None
            raise GesturekitError(f"{src}: INT8 calibration failed ({str(exc).splitlines()[0]})") from None
        proto = onnx.load(str(quantized))
        if reader is not None:
            atomic_write_bytes(cache, new_cache.read_bytes())
    for entry in original.metadata_props:
        if entry.key not in {p.key for p in proto.metadata_props}:
            proto.metadata_props.add(key=entry.key, value=entry.value)
    with_metadata(proto, {"quantization": {
        "mode": "ptq", "target": target, "method": method, "calibration_cache": cache.name,
        "calibration_images": reader.count if reader is not None else None, **grids(target)}})
    return atomic_write_bytes(out, proto.SerializeToString())
