"""Parameters and multiply-accumulates of an exported ONNX model, read from the graph itself, so that
FP32, FP16 and INT8 (QDQ) files of one network count alike and a model without its checkpoint is counted."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import shape_inference

_WEIGHTED = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class GraphStats:
    params: int
    """Elements of the weights and biases of every Conv, Gemm and MatMul node."""
    macs: int
    """Multiply-accumulates of those nodes for one input of ``input_shape``."""
    input_shape: tuple[int, ...]


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = shape_inference.infer_shapes(model)
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes


def graph_stats(path: str | Path, input_shape: tuple[int, ...]) -> GraphStats:
    """Count ``path``'s parameters and MACs with its input ``images`` fixed to ``input_shape`` [1,3,H,W]."""
    model = onnx.load(str(path))
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, input_shape):
        dim.ClearField("dim_param")
        dim.dim_value = size
    shapes = _shapes(model)
    params = macs = 0
    for node in model.graph.node:
        if node.op_type not in _WEIGHTED or len(node.input) < 2 or node.input[1] not in shapes:
            continue
        weight = shapes[node.input[1]]
        bias = shapes.get(node.input[2], []) if len(node.input) > 2 and node.input[2] else []
        params += math.prod(weight) + (math.prod(bias) if bias else 0)
        out = shapes.get(node.output[0])
        if out is None:
            continue
        if node.op_type == "Conv":  # each output element: in_channels/groups x kernel MACs
            macs += math.prod(out) * math.prod(weight[1:])
        else:  # each output element: one dot product over the shared dimension
            shared = weight[0] if node.op_type == "MatMul" else _gemm_shared(node, weight)
            macs += math.prod(out) * shared
    return GraphStats(params, macs, tuple(input_shape))


def _gemm_shared(node: onnx.NodeProto, weight: list[int]) -> int:
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return weight[1] if trans_b else weight[0]
