"""INT8: QAT fake quantization and its QDQ export, PTQ calibration with ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from conftest import random_detector

from gesturekit.config.specs import Training
from gesturekit.errors import GesturekitError
from gesturekit.export.onnx import export_onnx
from gesturekit.models import create_model
from gesturekit.models.metadata import ONNX_KEY, classifier_metadata
from gesturekit.export.ptq import calibrate_int8
from gesturekit.export.qdq import export_qat_onnx
from gesturekit.optimize.qat import (
    ActivationQuantizer,
    QuantConv2d,
    QuantLinear,
    WeightQuantizer,
    fold_batchnorm,
    prepare_qat,
)
from gesturekit.training.common import maybe_prepare_qat

SIZE = 64


def _detector() -> nn.Module:
    return random_detector(SIZE)


def _observe(model: nn.Module, batches: int = 2) -> nn.Module:
    """Run random batches in train mode so the activation ranges are observed, then eval."""
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model.export_forward(torch.randn(2, 3, SIZE, SIZE))
    return model.eval()


def _run(path, x: torch.Tensor, options: ort.SessionOptions | None = None) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})


def _ops(proto: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


def _initializers(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def test_fake_quantizers_snap_to_the_int8_grid() -> None:
    act = ActivationQuantizer().train()
    x = torch.randn(1000) * 3
    y = act(x)
    first = float(x.abs().max())
    assert float(act.amax) == pytest.approx(first)
    step = first / 127
    assert torch.allclose(y / step, torch.round(y / step), atol=1e-3)
    assert torch.allclose(y, x, atol=step / 2 + 1e-6)
    act(torch.full((4,), 100.0))  # the EMA moves 1% of the way towards the new batch max
    assert float(act.amax) == pytest.approx(first + 0.01 * (100.0 - first))

    weight = torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 10.0])[:, None, None, None]
    snapped = WeightQuantizer()(weight)
    for c in range(4):
        step = float(weight[c].abs().max()) / 127
        assert torch.allclose(snapped[c] / step, torch.round(snapped[c] / step), atol=1e-3)
        assert torch.allclose(snapped[c], weight[c], atol=step / 2 + 1e-6)


def test_asymmetric_quantizer_snaps_to_the_uint8_grid() -> None:
    act = ActivationQuantizer(symmetric=False).train()
    x = torch.linspace(-1.0, 3.0, 1001)
    y = act(x)
    assert (float(act.amin), float(act.amax)) == (-1.0, 3.0)
    step = 4.0 / 255  # zero point round(1 / step) = 64: the grid is [-64, 191] steps
    assert torch.allclose(y / step, torch.round(y / step), atol=1e-3)
    assert torch.allclose(y, x, atol=step / 2 + 1e-6)
    act(torch.tensor([-11.0, 13.0]))  # both ends move 1% of the way
    assert (float(act.amin), float(act.amax)) == (pytest.approx(-1.1), pytest.approx(3.1))
    act.eval().freeze()
    assert int(act.qparams[1]) == round(1.1 / (4.2 / 255))  # 67

    relu6 = ActivationQuantizer(symmetric=False).train()
    relu6(torch.rand(1000) * 6)  # a range from 0 up: zero point 0, so ONNX Runtime drops the Clip
    relu6.freeze()
    assert int(relu6.qparams[1]) == 0 and float(relu6.qparams[0]) * 255 <= 6.0


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_prepare_qat_swaps_layers_trains_and_reloads(target) -> None:
    model = _detector()
    names = set(model.state_dict())
    params = {n: id(p) for n, p in model.named_parameters()}
    prepare_qat(model, target)
    assert not [m for m in model.modules() if type(m) in (nn.Conv2d, nn.Linear)]
    assert {n: id(p) for n, p in model.named_parameters()} == params  # shared, same names
    added = set(model.state_dict()) - names
    assert model.metadata["qat"] is True and model.metadata["qat_target"] == target
    if target == "tensorrt":  # symmetric: one range per layer input
        assert added and all(n.endswith("input_quantizer.amax") for n in added)
    else:  # min and max; residual sums and the head's shared input are quantized where produced
        assert added and all(n.endswith(("input_quantizer.amax", "input_quantizer.amin", "output_quantizer.amax",
                                         "output_quantizer.amin")) for n in added)
        assert "backbone.stages.0.3.conv.output_quantizer.amin" in added  # a residual projection
        assert model.heads["8"].coverage.input_quantizer is None and model.heads["8"].bbox.input_quantizer is None

    model.train()
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 44.0]]), "labels": torch.tensor([0])}]
    losses = model(torch.randn(1, 3, SIZE, SIZE), targets)
    sum(losses.values()).backward()
    first = model.backbone.stages[0][0][0]
    assert isinstance(first, QuantConv2d) and float(first.input_quantizer.amax) > 0
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0

    fresh = prepare_qat(_detector(), target)  # a QAT checkpoint reloads into a freshly prepared model
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(fresh.eval().export_forward(x), model.eval().export_forward(x)))

    classifier = prepare_qat(create_model("gesturenet", num_classes=6, pretrained=False), target)
    assert isinstance(classifier.classifier, QuantLinear)


def test_training_spec_picks_the_qat_target() -> None:
    model = maybe_prepare_qat(_detector(), Training(enable_qat=True, qat_target="tensorrt"))
    assert all(m.symmetric for m in model.modules() if isinstance(m, ActivationQuantizer))
    model = maybe_prepare_qat(_detector(), Training(enable_qat=True))
    assert model.metadata["qat_target"] == "onnxruntime"
    assert not any(m.symmetric for m in model.modules() if isinstance(m, ActivationQuantizer))
    assert "qat" not in maybe_prepare_qat(_detector(), Training()).metadata


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_fold_batchnorm_keeps_the_quantized_function(target) -> None:
    model = _observe(prepare_qat(_detector(), target))
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model.export_forward(x)
        fold_batchnorm(model, x)
        got = model.export_forward(x)
    assert not [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-3, rtol=1e-4)


def test_qat_tensorrt_export_is_clean_symmetric_qdq(tmp_path) -> None:
    model = _observe(prepare_qat(_detector(), "tensorrt"))
    x = torch.randn(1, 3, SIZE, SIZE)
    path = export_qat_onnx(model, tmp_path / "qat.onnx", x)
    proto = onnx.load(str(path))
    ops = _ops(proto)
    assert "BatchNormalization" not in ops and "Constant" not in ops
    inits = _initializers(proto)
    qdq = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for node in qdq:  # scales and zero points are constants, as TensorRT needs; symmetric INT8
        assert node.input[1] in inits and inits[node.input[2]].dtype == np.int8 and not inits[node.input[2]].any()
    weights = [n for n in qdq if n.input[0] in inits]
    assert len(weights) == 47  # every convolution: int8 weights stored as such, one scale per output channel
    for node in weights:
        assert node.op_type == "DequantizeLinear" and inits[node.input[0]].dtype == np.int8
        assert [a.i for a in node.attribute if a.name == "axis"] == [0]
        assert inits[node.input[1]].shape == inits[node.input[0]].shape[:1]
    activations = [n for n in qdq if n.op_type == "QuantizeLinear"]
    assert len(activations) >= 40 and all(inits[n.input[1]].shape == () for n in activations)
    assert ops.count("DequantizeLinear") == len(activations) + len(weights)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[ONNX_KEY])
    assert meta["quantization"] | {"mode": "qat", "target": "tensorrt"} == meta["quantization"]
    assert meta["qat"] is True and meta["qat_target"] == "tensorrt"
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model itself is unchanged

    boxes, scores = _run(path, x)
    with torch.no_grad():
        ref_boxes, ref_scores = model.export_forward(x)
    assert np.allclose(scores, ref_scores.numpy(), atol=1e-3)
    assert np.allclose(boxes, ref_boxes.numpy(), atol=0.5)


def test_qat_onnxruntime_export_runs_as_quantized_kernels(tmp_path) -> None:
    model = _observe(prepare_qat(_detector()))
    x = torch.randn(1, 3, SIZE, SIZE)
    path = export_qat_onnx(model, tmp_path / "qat.onnx", x)
    proto = onnx.load(str(path))
    inits = _initializers(proto)
    quantize = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    weights = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert len(weights) == 47 and all(inits[n.input[0]].dtype == np.int8 and not inits[n.input[2]].any()
                                      for n in weights)  # weights: stored as symmetric INT8 per channel
    assert not any(t.dtype == np.float32 and t.ndim == 4 for t in inits.values())  # no float weight left
    zeros = [inits[n.input[2]] for n in quantize]
    assert all(z.dtype == np.uint8 and z.shape == () for z in zeros)  # activations: UINT8 per tensor
    assert zeros[0] > 0 and sum(z == 0 for z in zeros) >= 30  # the normalised image vs ReLU/ReLU6 outputs
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[ONNX_KEY])
    assert meta["quantization"]["target"] == "onnxruntime" and "uint8" in meta["quantization"]["activations"]
    assert meta["precision"] == "int8"

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    boxes, scores = _run(path, x, options)
    ops = _ops(onnx.load(options.optimized_model_filepath))
    assert ops.count("QLinearConv") == 45 and ops.count("Conv") + ops.count("FusedConv") == 2  # the output layers
    assert ops.count("QLinearAdd") >= 8 and "Relu" not in ops and ops.count("Clip") == 1  # box decoding's
    with torch.no_grad():
        ref_boxes, ref_scores = model.export_forward(x)
    assert np.allclose(scores, ref_scores.numpy(), atol=1e-3)  # integer kernels: rounding differences only
    assert np.allclose(boxes, ref_boxes.numpy(), atol=0.25)


def test_qat_export_needs_observed_ranges(tmp_path) -> None:
    with pytest.raises(GesturekitError, match="prepare_qat"):
        export_qat_onnx(_detector(), tmp_path / "a.onnx", torch.randn(1, 3, SIZE, SIZE))
    with pytest.raises(GesturekitError, match="never observed"):
        export_qat_onnx(prepare_qat(_detector()).eval(), tmp_path / "a.onnx", torch.randn(1, 3, SIZE, SIZE))


def _classifier_onnx(tmp_path):
    torch.manual_seed(0)
    model = create_model("gesturenet", num_classes=6, pretrained=False).eval()
    model.metadata = classifier_metadata("gesturenet", {"num_classes": 6}, list("abcdef"), SIZE, {})
    return model, export_onnx(model, tmp_path / "fp32.onnx", torch.randn(1, 3, SIZE, SIZE))


def test_ptq_writes_qdq_model_and_reusable_cache(tmp_path) -> None:
    model, fp32 = _classifier_onnx(tmp_path)
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((1, 3, SIZE, SIZE), dtype=np.float32) for _ in range(4)]
    cache = tmp_path / "calib.json"
    out = calibrate_int8(fp32, tmp_path / "int8.onnx", images, cache)

    proto = onnx.load(str(out))
    ops = _ops(proto)
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    assert ops[-1] == "Softmax" and "Gemm" in ops  # the output layer and softmax stay in float
    assert json.loads(cache.read_text())["data"]  # tensor ranges
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[ONNX_KEY])
    assert meta["task"] == "classification"
    assert meta["quantization"] | {"calibration_images": 4, "mode": "ptq"} == meta["quantization"]
    x = torch.from_numpy(images[0])
    (probs,) = _run(out, x)
    with torch.no_grad():
        assert np.allclose(probs, model.export_forward(x).numpy(), atol=0.05)

    again = calibrate_int8(fp32, tmp_path / "again.onnx", None, cache)  # the cache replaces the images
    assert onnx.load(str(again)).graph == proto.graph


def test_ptq_tensorrt_target_is_symmetric(tmp_path) -> None:
    _, fp32 = _classifier_onnx(tmp_path)
    images = [np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)] * 2
    proto = onnx.load(str(calibrate_int8(fp32, tmp_path / "trt.onnx", images, tmp_path / "c.json",
                                         target="tensorrt")))
    inits = _initializers(proto)
    zeros = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert zeros and all(z.dtype == np.int8 and not z.any() for z in zeros)


def test_ptq_rejects_bad_input(tmp_path) -> None:
    _, fp32 = _classifier_onnx(tmp_path)
    with pytest.raises(GesturekitError, match="calibration image 0"):
        calibrate_int8(fp32, tmp_path / "a.onnx", [np.zeros((3, SIZE, SIZE), np.float32)], tmp_path / "c.json")
    with pytest.raises(GesturekitError, match="no calibration"):
        calibrate_int8(fp32, tmp_path / "a.onnx", [], tmp_path / "c.json")
    with pytest.raises(GesturekitError, match="not found"):
        calibrate_int8(tmp_path / "nope.onnx", tmp_path / "a.onnx", [], tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "a.onnx").exists()
