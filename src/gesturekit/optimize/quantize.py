"""INT8 quantization: quantization-aware training (QAT) and post-training calibration (PTQ).

Both produce *QDQ* ONNX (``QuantizeLinear``/``DequantizeLinear`` pairs around float operators), which
ONNX Runtime fuses into INT8 kernels and TensorRT builds as explicit-precision INT8 engines. QAT uses
small fake-quant subclasses of Conv2d/Linear (so the optimizer, DDP, AMP and the training loop are
untouched); for ONNX Runtime ``prepare_qat`` quantizes each tensor once, at its producer, which is the
graph ONNX Runtime fuses. PTQ is ``onnxruntime.quantization.quantize_static`` on the exported FP32 ONNX,
with a reusable JSON calibration cache. ``target`` picks the INT8 grid: ``onnxruntime`` (U8S8, the CPU
runtime's) or ``tensorrt`` (symmetric INT8). Why these toolkits and not others, and what each target
costs: docs/QUANTIZATION.md.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import onnx
from onnx import helper, numpy_helper
import torch
import torch.nn.functional as F
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization import CalibrationMethod as OrtMethod
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn
from torch.overrides import TorchFunctionMode

from gesturekit.errors import GesturekitError
from gesturekit.export.onnx import export_onnx
from gesturekit.io import atomic_write_bytes
from gesturekit.models.metadata import ONNX_KEY

QMIN, QMAX = -128, 127
UQMAX = 255
Target = Literal["onnxruntime", "tensorrt"]
TARGETS: tuple[str, ...] = get_args(Target)
CalibrationMethod = Literal["minmax", "entropy", "percentile"]
METHODS = {"minmax": OrtMethod.MinMax, "entropy": OrtMethod.Entropy, "percentile": OrtMethod.Percentile}


# ---------------------------------------------------------------- fake quantization (QAT)


def _in_float(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` computed in float32 (fake quantization kernels need it), returned in x's dtype."""
    if x.dtype == torch.float32:
        return fn(x)
    return fn(x.float()).to(x.dtype)


class ActivationQuantizer(nn.Module):
    """Per-tensor fake quantization of an activation: symmetric INT8 or asymmetric UINT8.

    Symmetric (``tensorrt``): the range ``amax`` follows an EMA of the batch's max |x|, zero point
    0, INT8 grid. Asymmetric (``onnxruntime``): ``amin`` and ``amax`` follow EMAs of the batch's
    min and max; the range is widened to hold 0, so a range with ``amin >= 0`` (after ReLU/ReLU6)
    gets zero point 0; UINT8 grid. The first batch sets the range; in eval mode it is fixed.
    Before any range was observed it passes ``x`` through unchanged.
    """

    def __init__(self, symmetric: bool = True, momentum: float = 0.01) -> None:
        super().__init__()
        self.symmetric = symmetric
        self.momentum = momentum
        self.register_buffer("amax", torch.zeros(()))
        if not symmetric:
            self.register_buffer("amin", torch.zeros(()))
        self.qparams: tuple[torch.Tensor, torch.Tensor] | None = None

    def _seen(self) -> torch.Tensor:
        return self.amax > 0 if self.symmetric else self.amax > self.amin

    @property
    def observed(self) -> bool:
        """Whether a non-empty range was seen."""
        return bool(self._seen())

    def _update(self, x: torch.Tensor) -> None:
        """Move the range towards the batch's (no host synchronisation: stays on the device)."""
        x, seen = x.detach(), self._seen()
        pairs = [(self.amax, x.abs().amax())] if self.symmetric else [(self.amin, x.amin()), (self.amax, x.amax())]
        for buffer, batch in pairs:
            buffer.copy_(torch.where(seen, torch.lerp(buffer, batch.float(), self.momentum), batch.float()))

    def _qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point int32) of the current range."""
        if self.symmetric:
            return (self.amax / QMAX).clamp(min=1e-12), torch.zeros((), dtype=torch.int32, device=self.amax.device)
        low, high = self.amin.clamp(max=0), self.amax.clamp(min=0)
        scale = ((high - low) / UQMAX).clamp(min=1e-12)
        return scale, torch.round(-low / scale).clamp(0, UQMAX).to(torch.int32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update(x)
        elif self.qparams is None and not self.observed:
            return x
        scale, zero = self.qparams if self.qparams is not None else self._qparams()
        low, high = (QMIN, QMAX) if self.symmetric else (0, UQMAX)
        return _in_float(lambda v: torch.fake_quantize_per_tensor_affine(v, scale, zero, low, high), x)

    def freeze(self) -> None:
        """Fix the scale and zero point as constants (for export)."""
        if not self.observed:
            raise GesturekitError("activation range never observed")
        self.qparams = self._qparams()


class WeightQuantizer(nn.Module):
    """Symmetric per-output-channel INT8 fake quantization of a weight [C_out, ...]."""

    def __init__(self) -> None:
        super().__init__()
        self.scale: torch.Tensor | None = None

    def _scale(self, weight: torch.Tensor) -> torch.Tensor:
        return (weight.detach().abs().flatten(1).amax(1) / QMAX).clamp(min=1e-12).float()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = self.scale if self.scale is not None else self._scale(weight)
        zero = torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)
        return _in_float(lambda w: torch.fake_quantize_per_channel_affine(w, scale, zero, 0, QMIN, QMAX), weight)

    def freeze(self, weight: torch.Tensor) -> None:
        """Fix the scales from ``weight`` as constants (for export)."""
        self.scale = self._scale(weight)


def _quantize_input(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` fake-quantized by ``layer.input_quantizer``; as is where its producer quantizes it (None)."""
    return x if layer.input_quantizer is None else layer.input_quantizer(x)


def _quantize_output(module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: ``output`` fake-quantized by ``module.output_quantizer`` (a module-level
    function, so a deep copy of the model calls its own quantizer)."""
    return module.output_quantizer(output)


def _attach_output_quantizer(module: nn.Module, quantizer: ActivationQuantizer) -> None:
    module.output_quantizer = quantizer
    module.register_forward_hook(_quantize_output)


class QuantConv2d(nn.Conv2d):
    """Conv2d with fake-quantized input (per tensor; as ``target`` wants) and weight (per output channel)."""

    def __init__(self, *args, target: Target = "onnxruntime", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.input_quantizer = ActivationQuantizer(symmetric=target == "tensorrt")
        self.weight_quantizer = WeightQuantizer()

    @classmethod
    def from_float(cls, conv: nn.Conv2d, target: Target = "onnxruntime") -> "QuantConv2d":
        """A QuantConv2d sharing ``conv``'s parameters."""
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                padding_mode=conv.padding_mode, device="meta", target=target)
        q.weight, q.bias = conv.weight, conv.bias
        return q.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(_quantize_input(self, x), self.weight_quantizer(self.weight), self.bias)


class QuantLinear(nn.Linear):
    """Linear with fake-quantized input (per tensor; as ``target`` wants) and weight (per output feature)."""

    def __init__(self, *args, target: Target = "onnxruntime", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.input_quantizer = ActivationQuantizer(symmetric=target == "tensorrt")
        self.weight_quantizer = WeightQuantizer()

    @classmethod
    def from_float(cls, linear: nn.Linear, target: Target = "onnxruntime") -> "QuantLinear":
        """A QuantLinear sharing ``linear``'s parameters."""
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta",
                target=target)
        q.weight, q.bias = linear.weight, linear.bias
        return q.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_quantize_input(self, x), self.weight_quantizer(self.weight), self.bias)


QUANT_LAYERS = (QuantConv2d, QuantLinear)


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise GesturekitError(f"target: unknown target {target!r} (onnxruntime or tensorrt)")


class _Recorder(TorchFunctionMode):
    """Records every addition of two tensors ``(a, b, a + b)`` and every nearest-neighbour resize
    (``resized[id(output)] = input``)."""

    def __init__(self) -> None:
        super().__init__()
        self.adds: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.resized: dict[int, torch.Tensor] = {}
        self.kept: list[torch.Tensor] = []  # alive until the end, so their ids stay unique

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (torch.add, torch.Tensor.add) and all(isinstance(a, torch.Tensor) for a in args[:2]):
            self.adds.append((args[0], args[1], out))
        elif func is F.interpolate and kwargs.get("mode", args[3] if len(args) > 3 else "nearest") == "nearest":
            self.resized[id(out)] = args[0]
            self.kept.append(out)
        return out


def _trace(model: nn.Module) -> tuple[_Recorder, list[tuple[nn.Module, torch.Tensor]],
                                       Callable[[torch.Tensor], nn.Module | None]]:
    """One forward of a zero image [1,3,64,64] (eval mode, restored after): the additions and
    resizes, the (quantized layer, input) reads, and ``producer(tensor)``: the outermost module
    that returned the tensor, called once and not passing its input through (None if none)."""
    returned: dict[int, list[nn.Module]] = {}
    calls: dict[nn.Module, int] = {}
    reads: list[tuple[nn.Module, torch.Tensor]] = []
    recorder = _Recorder()

    def on_output(module, inputs, output):
        calls[module] = calls.get(module, 0) + 1
        if isinstance(output, torch.Tensor) and not any(output is i for i in inputs):
            returned.setdefault(id(output), []).append(module)  # inner modules return first
            recorder.kept.append(output)

    def on_input(module, inputs):
        reads.append((module, inputs[0]))

    def producer(t: torch.Tensor) -> nn.Module | None:
        return next((m for m in reversed(returned.get(id(t), [])) if calls[m] == 1), None)

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(on_output) for m in model.modules()]
    handles += [m.register_forward_pre_hook(on_input) for m in model.modules() if isinstance(m, QUANT_LAYERS)]
    try:
        with torch.no_grad(), recorder:
            model.eval().export_forward(torch.zeros(1, 3, 64, 64, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return recorder, reads, producer


def _quantize_shared_tensors(model: nn.Module) -> None:
    """Quantize once, where they are produced, the tensors that per-layer input quantizers miss.

    ONNX Runtime fuses ``DQ -> Conv -> Q`` into ``QLinearConv`` only when the convolution's output
    (after a ReLU/Clip it folds) goes to one ``QuantizeLinear``, and ``DQ -> Add -> Q`` into
    ``QLinearAdd``. Input quantizers alone leave in float a residual block's projection (it feeds
    an addition), a layer whose output an addition and a layer read, and one read by two layers
    (the detector head's coverage and box layers). So these tensors get an ``output_quantizer``
    on the module that produces them (``_trace``): the operands and the sum of each addition whose
    two operands come from modules (or are a nearest-neighbour resize of a module output: ONNX
    Runtime moves the quantization across the ``Resize``), and each tensor read by several
    quantized layers. A quantized layer reading such a tensor drops its own input quantizer (None).
    """
    recorder, reads, producer = _trace(model)
    shared: list[torch.Tensor] = []
    for a, b, total in recorder.adds:
        operands = [recorder.resized.get(id(t), t) for t in (a, b)]
        if all(producer(t) is not None for t in operands):
            shared += [*operands, total]
    readers = Counter(id(x) for _, x in reads)
    shared += [x for _, x in reads if readers[id(x)] > 1]
    quantized: set[int] = set()
    for t in shared:
        module = producer(t)
        if module is None:
            continue
        if not hasattr(module, "output_quantizer"):
            _attach_output_quantizer(module, ActivationQuantizer(symmetric=False))
        quantized.add(id(t))
    for layer, x in reads:
        if id(x) in quantized:
            layer.input_quantizer = None


def prepare_qat(model: nn.Module, target: Target = "onnxruntime") -> nn.Module:
    """Swap every Conv2d/Linear of ``model`` (in place) for its fake-quantized version.

    Parameters are shared, not copied, and keep their names. ``target`` picks the activation grid
    as for PTQ (module docstring); for ``onnxruntime`` the tensors of residual additions are
    quantized where they are produced (``_quantize_shared_tensors``). The quantizers' range
    buffers (``amax``, plus ``amin`` for ``onnxruntime``) are saved in the state dict.
    ``model.metadata`` gets ``qat: true`` and ``qat_target``. Call it after loading float weights
    and before building the optimizer; a QAT checkpoint is reloaded by calling it, with the
    checkpoint's ``qat_target``, on a fresh model before ``load_state_dict``.

    Returns:
        ``model``.
    """
    _check_target(target)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                setattr(parent, name, QuantConv2d.from_float(child, target))
            elif type(child) is nn.Linear:
                setattr(parent, name, QuantLinear.from_float(child, target))
    if target == "onnxruntime":
        _quantize_shared_tensors(model)
    if isinstance(getattr(model, "metadata", None), dict):
        model.metadata.update(qat=True, qat_target=target)
    return model


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where the BatchNorm reads the convolution's output."""
    names = {m: n for n, m in model.named_modules()}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []

    def conv_hook(module, _inputs, output):
        outputs[id(output)] = (names[module], output)  # the tensor is kept so its id stays unique

    def bn_hook(module, inputs):
        found = outputs.get(id(inputs[0]))
        if found is not None and found[1] is inputs[0]:
            pairs.append((found[0], names[module]))

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, QuantConv2d)]
    handles += [m.register_forward_pre_hook(bn_hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.export_forward(example)
    finally:
        for h in handles:
            h.remove()
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Fold each BatchNorm2d into the QuantConv2d that feeds it (in place, eval mode).

    The BatchNorm becomes ``nn.Identity``. Exact for per-channel symmetric weight quantization.
    """
    model.eval()
    for conv_name, bn_name in _conv_bn_pairs(model, example):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
        parent, _, child = bn_name.rpartition(".")
        identity = nn.Identity()
        if hasattr(bn, "output_quantizer"):  # the BatchNorm's output is the convolution's now
            _attach_output_quantizer(identity, bn.output_quantizer)
        setattr(model.get_submodule(parent), child, identity)
    return model


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


def _count_qdq(proto: onnx.ModelProto) -> tuple[int, int]:
    ops = [n.op_type for n in proto.graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")


def _grids(target: Target) -> dict[str, str]:
    """The metadata's description of the weight and activation grids of ``target``."""
    return {"weights": "int8 symmetric per-channel",
            "activations": "int8 symmetric per-tensor" if target == "tensorrt" else "uint8 asymmetric per-tensor"}


def _with_metadata(proto: onnx.ModelProto, extra: dict) -> None:
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
                       "quantization": {"mode": "qat", "target": target, **_grids(target)}}
    with tempfile.TemporaryDirectory() as tmp:
        proto = store_int8_weights(fold_constants(onnx.load(str(export_onnx(frozen, Path(tmp) / "qat.onnx",
                                                                            example)))))
    onnx.checker.check_model(proto)
    if min(_count_qdq(proto)) == 0:
        raise GesturekitError(f"{out}: the export holds no QuantizeLinear/DequantizeLinear pair")
    return atomic_write_bytes(out, proto.SerializeToString())


# ---------------------------------------------------------------- post-training calibration (PTQ)


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
        target: ``onnxruntime`` (U8S8, fast on CPU) or ``tensorrt`` (symmetric S8S8); see the
            module docstring.
        method: ``minmax``, ``entropy`` or ``percentile`` (99.999) range calibration.

    Returns:
        ``out_path``.

    Raises:
        GesturekitError: missing model, bad calibration image, or no image and no cache.
    """
    src, out, cache = Path(onnx_fp32_path), Path(out_path), Path(cache_path)
    if not src.is_file():
        raise GesturekitError(f"{src}: ONNX model not found")
    _check_target(target)
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
    _with_metadata(proto, {"quantization": {
        "mode": "ptq", "target": target, "method": method, "calibration_cache": cache.name,
        "calibration_images": reader.count if reader is not None else None, **_grids(target)}})
    return atomic_write_bytes(out, proto.SerializeToString())
