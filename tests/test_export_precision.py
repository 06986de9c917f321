"""FP16 and INT8 exports, calibration image selection, TensorRT profiles and the export command."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import typer
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from conftest import kitti_line, make_image, write_kitti
from gesturekit.cli import export as export_cli
from gesturekit.cli.main import main
from gesturekit.errors import GesturekitError, UsageError
from gesturekit.export import job as export_job
from gesturekit.export.calibration import CalibrationItem, calibration_inputs, read_item, select_calibration_items
from gesturekit.export.onnx import check_parity
from gesturekit.export.precision import (
    default_calibration_cache,
    export_precision,
    set_metadata,
    sort_topologically,
)
from gesturekit.export.tensorrt import TENSORRT_MISSING, profile_shapes
from gesturekit.models import create_model
from gesturekit.models.metadata import detector_metadata, read_onnx_metadata
from gesturekit.runtime.detector import HandDetector, preprocess_frame
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend

KWARGS = {"num_classes": 1, "backbone": "mobilenet_v2", "head_channels": 16, "strides": [8]}
POST = {"score_threshold": 0.01, "clustering": "nms", "nms_iou_threshold": 0.5, "max_detections": 20}
SIZE = 128


def tiny_detector() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("detectnet_v2", **KWARGS, pretrained=False, postprocessing=POST)
    model.metadata = detector_metadata("detectnet_v2", KWARGS, ["hand"], SIZE, POST)
    return model.eval()


@pytest.fixture(scope="module")
def kitti(tmp_path_factory) -> Path:
    """A KITTI dataset of 6 noisy 160x120 images, one hand each: 4 in train, 2 in test."""
    root = tmp_path_factory.mktemp("kitti")
    names = [f"{i}.png" for i in range(6)]
    write_kitti(root, {n: [kitti_line("hand", 20 + 5 * i, 30, 80 + 5 * i, 100)] for i, n in enumerate(names)},
                {"train": names[:4], "test": names[4:]}, size=(160, 120))
    rng = np.random.default_rng(0)
    for name in names:  # texture, so that activations have a range worth calibrating
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(root / "images" / name)
    return root


def _inputs(kitti: Path, split: str = "train") -> list[np.ndarray]:
    items = select_calibration_items([kitti], split, 10)
    return list(calibration_inputs(items, lambda rgb: preprocess_frame(rgb, SIZE)[0]))


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_fp16_export_runs_in_onnxruntime_with_float32_io(tmp_path, kitti) -> None:
    model = tiny_detector()
    path = export_precision(model, tmp_path / "fp16.onnx", torch.zeros(1, 3, SIZE, SIZE), "fp16")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.output)] == [TensorProto.FLOAT] * 3
    weights = {t.name: t.data_type for t in proto.graph.initializer}
    conv_weights = [weights[n.input[1]] for n in proto.graph.node if n.op_type == "Conv"]
    assert conv_weights and set(conv_weights) == {TensorProto.FLOAT16}
    assert read_onnx_metadata(path) == {**model.metadata, "precision": "fp16"}
    batch = torch.from_numpy(np.concatenate(_inputs(kitti)))
    diffs = check_parity(model, path, batch)
    assert diffs["scores"] < 1e-2 and diffs["boxes"] < 1.0  # boxes in input pixels
    found = HandDetector(OnnxRuntimeBackend(path, threads=1))([np.zeros((90, 120, 3), np.uint8)])
    assert len(found) == 1


def test_int8_export_is_qdq_with_metadata_and_cache(tmp_path, kitti) -> None:
    model = tiny_detector()
    out = tmp_path / "det.onnx"
    path = export_precision(model, out, torch.zeros(1, 3, SIZE, SIZE), "int8", iter(_inputs(kitti)))
    ops = _ops(path)
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    meta = read_onnx_metadata(path)
    assert meta["precision"] == "int8" and meta["quantization"]["mode"] == "ptq"
    assert meta["quantization"]["calibration_images"] == 4
    assert {k: meta[k] for k in model.metadata} == model.metadata
    cache = default_calibration_cache(out)
    assert cache == tmp_path / "det.calib.json" and cache.is_file()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {"images": np.zeros((2, 3, 96, SIZE), np.float32)})
    assert boxes.shape == (2, 12 * 16, 4) and scores.shape == (2, 12 * 16, 1)
    again = export_precision(model, tmp_path / "again.onnx", torch.zeros(1, 3, SIZE, SIZE), "int8", None, cache)
    assert read_onnx_metadata(again)["quantization"]["calibration_images"] is None  # ranges from the cache


def test_export_precision_rejects_unknown_precision(tmp_path) -> None:
    with pytest.raises(GesturekitError, match="precision: unknown precision 'int4'"):
        export_precision(tiny_detector(), tmp_path / "x.onnx", torch.zeros(1, 3, SIZE, SIZE), "int4")


def test_sort_topologically_and_set_metadata() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    shuffled = [nodes[2], nodes[1], nodes[0]]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("x", "y")]
    proto = helper.make_model(helper.make_graph(shuffled, "g", io[:1], io[1:]))
    proto.metadata_props.add(key="gesturekit", value='{"task": "detection"}')
    sort_topologically(proto.graph)
    onnx.checker.check_model(proto)
    assert [n.op_type for n in proto.graph.node] == ["Relu", "Neg", "Add"]
    set_metadata(proto, {"precision": "fp16"})
    assert proto.metadata_props[0].value == '{"task": "detection", "precision": "fp16"}'
    del proto.metadata_props[:]
    with pytest.raises(GesturekitError, match="no gesturekit metadata"):
        set_metadata(proto, {})


def test_calibration_items_spread_over_sources(tmp_path, kitti) -> None:
    folder = tmp_path / "frames"
    for i in range(10):
        make_image(folder / f"{i:02d}.jpg")
    (folder / "notes.txt").write_text("not an image")
    picked = select_calibration_items([folder], "train", 4)
    assert [p.image.name for p in picked] == ["00.jpg", "03.jpg", "06.jpg", "09.jpg"]
    both = select_calibration_items([kitti, folder], "train", 100)
    assert len(both) == 14 and {p.image.parent for p in both} == {kitti / "images", folder}
    assert [p.image.name for p in select_calibration_items([kitti], "test", 100)] == ["4.png", "5.png"]
    crops = select_calibration_items([kitti], "train", 100, boxes=True)
    assert crops[0].box == (20.0, 30.0, 80.0, 100.0)
    crop = read_item(crops[0], {"margin_px": 0, "enlarge_ratio": 1.0, "square": True})
    assert crop.shape == (70, 70, 3)
    with pytest.raises(GesturekitError, match="no split 'val'"):
        select_calibration_items([kitti], "val", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GesturekitError, match="empty: calibration images: no image file"):
        select_calibration_items([tmp_path / "empty"], "train", 4)
    with pytest.raises(GesturekitError, match="notes.txt: unreadable image"):
        read_item(CalibrationItem(folder / "notes.txt"))


def test_profile_shapes() -> None:
    det = profile_shapes({"task": "detection", "input_size": 448}, max_batch=4)
    assert det == {"min": (1, 3, 32, 32), "opt": (1, 3, 352, 448), "max": (4, 3, 608, 608)}
    assert preprocess_frame(np.zeros((480, 640, 3), np.uint8), 448)[0].shape == det["opt"][1:]
    for height, width in [(360, 640), (1080, 620), (100, 2000), (2000, 100), (8, 8)]:  # any frame fits the profile
        shape = preprocess_frame(np.zeros((height, width, 3), np.uint8), 448)[0].shape
        assert all(low <= side <= high for low, side, high in zip(det["min"][1:], shape, det["max"][1:]))
    cls = profile_shapes({"task": "classification", "input_size": 224})
    assert cls == {"min": (1, 3, 224, 224), "opt": (1, 3, 224, 224), "max": (8, 3, 224, 224)}
    with pytest.raises(GesturekitError, match="max_batch"):
        profile_shapes({"task": "classification", "input_size": 224}, max_batch=0)


@pytest.fixture()
def cli(tmp_path) -> tuple[CliRunner, typer.Typer, Path]:
    model = tiny_detector()
    ckpt = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "metadata": model.metadata}, ckpt)
    app = typer.Typer()
    app.command()(export_cli.export)
    return CliRunner(), app, ckpt


def test_export_command_int8_with_calibration_and_evaluation(cli, kitti, tmp_path) -> None:
    runner, app, ckpt = cli
    out = tmp_path / "int8.onnx"
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(out), "--precision", "int8", "--calibration-images",
                                 str(kitti), "--eval-dataset", str(kitti)])
    assert result.exit_code == 0, result.output
    assert "calibration: 4 images of" in result.output and "(train)" in result.output
    assert "parity with PyTorch on 4 images" in result.output and "boxes" in result.output
    assert "ONNX int8" in result.output and "points" in result.output and "kitti" in result.output
    assert "QuantizeLinear" in _ops(out) and (tmp_path / "int8.calib.json").is_file()
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(out), "--precision", "int8"])  # the cache is reused
    assert result.exit_code == 0, result.output
    assert "reusing the ranges of" in result.output
    cache = tmp_path / "int8.calib.json"
    ranges = json.loads(cache.read_text())
    stale = copy.deepcopy(ranges)  # another model's ranges
    for tensor in stale["data"].values():
        tensor["highest"]["data"] = [v * 10 for v in tensor["highest"]["data"]]
    cache.write_text(json.dumps(stale))
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(out), "--precision", "int8", "--calibration-images",
                                 str(kitti)])  # images given: calibrate again, whatever the cache holds
    assert result.exit_code == 0, result.output
    assert "reusing" not in result.output and json.loads(cache.read_text()) == ranges != stale
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(tmp_path / "x.onnx"), "--precision", "int8"])
    assert isinstance(result.exception, UsageError) and "--calibration-images" in str(result.exception)


def test_export_command_converts_an_fp32_onnx_file_as_its_checkpoint_would(cli, kitti, tmp_path) -> None:
    runner, app, ckpt = cli
    fp32, from_onnx, from_ckpt = tmp_path / "fp32.onnx", tmp_path / "a_int8.onnx", tmp_path / "b_int8.onnx"
    calibrate = ["--precision", "int8", "--calibration-images", str(kitti)]
    assert runner.invoke(app, ["-m", str(ckpt), "-o", str(fp32)]).exit_code == 0
    result = runner.invoke(app, ["-m", str(fp32), "-o", str(from_onnx), *calibrate, "--eval-dataset", str(kitti)])
    assert result.exit_code == 0, result.output
    assert "parity with fp32.onnx" in result.output and "fp32.onnx" in result.output.split("AP@0.5")[1]
    assert runner.invoke(app, ["-m", str(ckpt), "-o", str(from_ckpt), *calibrate]).exit_code == 0
    assert read_onnx_metadata(from_onnx) == read_onnx_metadata(from_ckpt) | {
        "quantization": read_onnx_metadata(from_ckpt)["quantization"] | {"calibration_cache": "a_int8.calib.json"}}
    assert json.loads(default_calibration_cache(from_onnx).read_text()) == json.loads(
        default_calibration_cache(from_ckpt).read_text())  # the same ranges: the same FP32 graph was calibrated
    batch = np.random.default_rng(0).normal(size=(1, 3, 96, SIZE)).astype(np.float32)
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": batch})
               for p in (from_onnx, from_ckpt)]
    for a, b in zip(*outputs):
        np.testing.assert_array_equal(a, b)
    result = runner.invoke(app, ["-m", str(from_onnx), "-o", str(tmp_path / "x.onnx"), *calibrate])
    assert isinstance(result.exception, GesturekitError) and "a int8 model" in str(result.exception)
    result = runner.invoke(app, ["-m", str(fp32), "-o", str(tmp_path / "x.onnx")])
    assert isinstance(result.exception, GesturekitError) and "already an FP32 ONNX model" in str(result.exception)


def test_export_command_fp16_parity_on_images(cli, kitti, tmp_path) -> None:
    runner, app, ckpt = cli
    out = tmp_path / "fp16.onnx"
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(out), "--precision", "fp16", "--images", str(kitti / "images")])
    assert result.exit_code == 0, result.output
    assert "6 images of" in result.output and "(fp16," in result.output
    assert read_onnx_metadata(out)["precision"] == "fp16"
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(out), "--precision", "fp16", "--tolerance", "0"])
    assert isinstance(result.exception, GesturekitError) and "parity check failed" in str(result.exception)


def test_export_engine_without_tensorrt_says_so(cli, tmp_path, monkeypatch, capsys) -> None:
    _, _, ckpt = cli
    monkeypatch.setattr(export_job, "tensorrt_available", lambda: False)
    out = tmp_path / "det.onnx"
    monkeypatch.setattr(sys, "argv", ["gesturekit", "export", "-m", str(ckpt), "-o", str(out), "--engine"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.err == f"error: {TENSORRT_MISSING}\n" and captured.out == ""
    assert not out.exists()


def test_export_command_qat_checkpoint_exports_its_learned_ranges(kitti, tmp_path) -> None:
    from gesturekit.optimize.prune import prune_model
    from gesturekit.optimize.restore import load_model_from_checkpoint
    from gesturekit.optimize.qat import prepare_qat

    model = prepare_qat(tiny_detector()).train()
    with torch.no_grad():
        for x in _inputs(kitti):
            model.export_forward(torch.from_numpy(x))
    ckpt = tmp_path / "qat.pt"
    torch.save({"model": model.state_dict(), "metadata": model.metadata}, ckpt)
    reloaded = load_model_from_checkpoint(ckpt)  # the fake quantization comes back with its ranges
    assert reloaded.metadata["qat_target"] == "onnxruntime"
    x = torch.from_numpy(_inputs(kitti)[0])
    assert torch.allclose(reloaded.export_forward(x)[1], model.eval().export_forward(x)[1], atol=1e-6)
    with pytest.raises(GesturekitError, match="cannot be pruned"):
        prune_model(reloaded, torch.zeros(1, 3, SIZE, SIZE), 0.5)
    with pytest.raises(GesturekitError, match="int8 only"):
        export_precision(reloaded, tmp_path / "fp16.onnx", x, "fp16")

    app = typer.Typer()
    app.command()(export_cli.export)
    runner, out = CliRunner(), tmp_path / "qat.onnx"
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(out), "--precision", "int8", "--eval-dataset", str(kitti)])
    assert result.exit_code == 0, result.output
    assert "QAT ranges" in result.output and "PyTorch QAT" in result.output and "calibration" not in result.output
    zero_points = [n.input[2] for n in onnx.load(str(out)).graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and not (tmp_path / "qat.calib.json").exists()
    for args, message in ((["--precision", "fp32"], "int8 only"), (["--precision", "int8", "--int8-target", "tensorrt"], "not tensorrt")):
        result = runner.invoke(app, ["-m", str(ckpt), "-o", str(tmp_path / "x.onnx"), *args])
        assert isinstance(result.exception, GesturekitError) and message in str(result.exception), result.output
