"""QDQ ONNX: the graph passes that make an exported fake-quantized model a plain INT8 QDQ file, and
``export_qat_onnx``, which exports a QAT model (``optimize.qat``) through them.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from gesturekit.errors import GesturekitError
from gesturekit.export.onnx import export_onnx
from gesturekit.io import atomic_write_bytes
from gesturekit.models.metadata import ONNX_KEY
from gesturekit.optimize.qat import QUANT_LAYERS, ActivationQuantizer, fold_batchnorm, grids


def fold_constants(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Turn ``Constant`` nodes into initializers and fold ``Cast`` nodes of constants (in place).

    The TorchScript exporter writes every Q/DQ zero point as ``Cast(Constant)``; after this pass
    scales and zero points are plain initializers, as TensorRT's parser expects.
    """
    graph = proto.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept, folded = [], {}
    for node in graph.node:
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            folded[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Cast" and node.input[0] in values.keys() | folded.keys():
            source = folded.get(node.input[0], values.get(node.input[0]))
            to = next(a.i for a in node.attribute if a.name == "to")
            folded[node.output[0]] = source.astype(helper.tensor_dtype_to_np_dtype(to))
        else:
            kept.append(node)
    _replace_nodes(graph, kept, [numpy_helper.from_array(np.asarray(v), k) for k, v in folded.items()])
    return proto


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> None:
    """Give ``graph`` these nodes, add the initializers, and drop every initializer no node reads."""
    used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)


def store_int8_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every ``QuantizeLinear`` of a constant (the weights) by its integer result (in place).

    The exporter writes a fake-quantized weight as float initializer -> Q -> DQ; after this pass it
    is an int8 initializer -> DQ, as PTQ files store weights: a quarter of the size, and the same
    values (ONNX rounds half to even, as ``np.round`` does).
    """
    graph = proto.graph
    values = {t.name: t for t in graph.initializer}
    kept, quantized = [], []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not all(name in values for name in node.input):
            kept.append(node)
            continue
        weight, scale = (numpy_helper.to_array(values[name]) for name in node.input[:2])
        zero = numpy_helper.to_array(values[node.input[2]]) if len(node.input) > 2 else np.zeros((), np.uint8)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * weight.ndim
        if scale.ndim:
            shape[axis] = -1
        info = np.iinfo(zero.dtype)
        q = np.round(weight / scale.reshape(shape)) + zero.reshape(shape).astype(np.int64)
        quantized.append(numpy_helper.from_array(np.clip(q, info.min, info.max).astype(zero.dtype), node.output[0]))
    _replace_nodes(graph, kept, quantized)
    return proto


def count_qdq(proto: onnx.ModelProto) -> tuple[int, int]:
    ops = [n.op_type for n in proto.graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")


def with_metadata(proto: onnx.ModelProto, extra: dict) -> None:
    """Merge ``extra`` into the gesturekit metadata JSON of ``proto`` (added when absent)."""
    entries = {p.key: p for p in proto.metadata_props}
    entry = entries.get(ONNX_KEY)
    if entry is None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_KEY, "{}"
    entry.value = json.dumps({**json.loads(entry.value), **extra})


def export_qat_onnx(model: nn.Module, out: str | Path, example: torch.Tensor) -> Path:
    """Export a QAT model (``prepare_qat`` + training) as QDQ ONNX.

    A copy is exported: BatchNorm folded into the convolutions, quantizer scales and zero points
    fixed as constants, ``metadata.quantization`` added (mode ``qat``, the target its quantizers
    were prepared for, the grids). The original model is not changed.

    Args:
        model: a model prepared with ``prepare_qat`` whose activation ranges were observed.
        out: the ``.onnx`` file to write.
        example: float32 input [1,3,H,W] for tracing.

    Raises:
        GesturekitError: the model is not prepared for QAT, or a range was never observed.
    """
    if not any(isinstance(m, QUANT_LAYERS) for m in model.modules()):
        raise GesturekitError("export_qat_onnx: the model has no quantized layers (call prepare_qat first)")
    quantizers = {n: m for n, m in model.named_modules() if isinstance(m, ActivationQuantizer)}
    unseen = [n for n, m in quantizers.items() if not m.observed]
    if unseen:
        raise GesturekitError(f"{unseen[0]}: activation range never observed (train with QAT, or run "
                              "batches through the model in train mode, before exporting)")
    frozen = fold_batchnorm(copy.deepcopy(model), example)
    for m in frozen.modules():
        if isinstance(m, ActivationQuantizer):
            m.freeze()
        elif isinstance(m, QUANT_LAYERS):
            m.weight_quantizer.freeze(m.weight)
    target = "tensorrt" if next(iter(quantizers.values())).symmetric else "onnxruntime"
    frozen.metadata = {**getattr(model, "metadata", {}), "precision": "int8",
                       "quantization": {"mode": "qat", "target": target, **grids(target)}}
    with tempfile.TemporaryDirectory() as tmp:
        proto = store_int8_weights(fold_constants(onnx.load(str(export_onnx(frozen, Path(tmp) / "qat.onnx",
                                                                            example)))))
    onnx.checker.check_model(proto)
    if min(count_qdq(proto)) == 0:
        raise GesturekitError(f"{out}: the export holds no QuantizeLinear/DequantizeLinear pair")
    return atomic_write_bytes(out, proto.SerializeToString())
