"""Fake quantization for quantization-aware training (QAT): quantized Conv2d/Linear modules and
``prepare_qat``, which puts them in a model on the INT8 grid of the runtime that will run it.

The modules subclass Conv2d/Linear, so the optimizer, DDP, AMP and the training loop are untouched. For
ONNX Runtime ``prepare_qat`` quantizes each tensor once, at its producer, which is the graph ONNX Runtime
fuses into INT8 kernels. The export to QDQ ONNX is ``export.qdq.export_qat_onnx``; why these choices:
docs/QUANTIZATION.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gesturekit.errors import GesturekitError

QMIN, QMAX = -128, 127
UQMAX = 255
Target = Literal["onnxruntime", "tensorrt"]
"""The INT8 grid: ``onnxruntime`` (uint8 asymmetric activations, the CPU runtime's) or ``tensorrt``
(symmetric int8)."""
TARGETS: tuple[str, ...] = get_args(Target)


def grids(target: Target) -> dict[str, str]:
    """The metadata's description of the weight and activation grids of ``target``."""
    return {"weights": "int8 symmetric per-channel",
            "activations": "int8 symmetric per-tensor" if target == "tensorrt" else "uint8 asymmetric per-tensor"}


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


def check_target(target: str) -> None:
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
    check_target(target)
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
