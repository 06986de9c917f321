"""ONNX export: parity with PyTorch on real frames, dynamic axes, metadata, the export command."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import typer
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
from PIL import Image
from typer.testing import CliRunner

from gesturekit.cli import export as export_cli
from gesturekit.errors import GesturekitError, UsageError
from gesturekit.export import job as export_job
from gesturekit.export.onnx import check_parity, export_onnx
from gesturekit.models import create_model
from gesturekit.models.metadata import classifier_metadata, detector_metadata, read_onnx_metadata
from gesturekit.optimize.restore import load_model_from_checkpoint
from gesturekit.runtime.classifier import preprocess_crop
from gesturekit.runtime.detector import preprocess_frame

DET_KWARGS = {"num_classes": 1, "backbone": "mobilenet_v2", "head_channels": 16, "strides": [8]}
POST = {"score_threshold": 0.005, "clustering": "nms", "nms_iou_threshold": 0.5, "max_detections": 20}
CLS_KWARGS = {"num_classes": 6, "backbone": "mobilenet_v2", "dropout": 0.2}
GESTURES = ["thumbs_up", "fist", "stop", "ok", "two", "random"]


def tiny_detector() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("detectnet_v2", **DET_KWARGS, pretrained=False, postprocessing=POST)
    model.metadata = detector_metadata("detectnet_v2", DET_KWARGS, ["hand"], 160, POST, training={"epochs": 1})
    return model.eval()


def tiny_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("gesturenet", **CLS_KWARGS, pretrained=False)
    model.metadata = classifier_metadata("gesturenet", CLS_KWARGS, GESTURES, 64,
                                         {"margin_px": 0, "enlarge_ratio": 1.3, "square": True})
    return model.eval()


def egohands_frames(data_root: Path, count: int = 3) -> list[tuple[np.ndarray, list[tuple[int, ...]]]]:
    """The first ``count`` EgoHands train frames (RGB arrays) with their hand boxes."""
    boxes: dict[str, list[tuple[int, ...]]] = {}
    with open(data_root / "egohands" / "train_labels.csv") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["filename"], []).append(tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")))
    names = sorted(boxes)[:count]
    return [(np.asarray(Image.open(data_root / "egohands" / "images" / n).convert("RGB")), boxes[n]) for n in names]


@pytest.fixture(scope="module")
def detector_onnx(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    model = tiny_detector()
    path = export_onnx(model, tmp_path_factory.mktemp("det") / "det.onnx", torch.zeros(1, 3, 96, 160))
    return model, path


@pytest.fixture(scope="module")
def classifier_onnx(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    model = tiny_classifier()
    path = export_onnx(model, tmp_path_factory.mktemp("cls") / "cls.onnx", torch.zeros(1, 3, 64, 64))
    return model, path


def test_detector_parity_on_real_frames(detector_onnx, data_root) -> None:
    model, path = detector_onnx
    inputs = [preprocess_frame(frame, 160)[0] for frame, _ in egohands_frames(data_root)]
    batch = torch.from_numpy(np.stack(inputs))
    assert batch.shape == (3, 3, 128, 192)  # 640x360 -> 185x104 (the pixels of 160x120), padded
    for images in (batch[:1], batch):
        diffs = check_parity(model, path, images)
        assert set(diffs) == {"boxes", "scores"}
        assert max(diffs.values()) < 1e-4


def test_detector_dynamic_batch_and_size(detector_onnx) -> None:
    model, path = detector_onnx
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores"]
    for shape in [(1, 3, 96, 160), (3, 3, 64, 128), (2, 3, 160, 96)]:
        images = torch.randn(*shape)
        boxes, scores = session.run(None, {"images": images.numpy()})
        cells = (shape[2] // 8) * (shape[3] // 8)
        assert boxes.shape == (shape[0], cells, 4) and scores.shape == (shape[0], cells, 1)
        assert max(check_parity(model, path, images).values()) < 1e-4


def test_classifier_parity_and_dynamic_batch(classifier_onnx, data_root) -> None:
    model, path = classifier_onnx
    crops = [frame[y1:y2, x1:x2] for frame, boxes in egohands_frames(data_root) for x1, y1, x2, y2 in boxes][:3]
    batch = torch.from_numpy(np.stack([preprocess_crop(c, 64) for c in crops]))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for images in (batch[:1], batch):
        (probs,) = session.run(None, {"images": images.numpy()})
        assert probs.shape == (len(images), 6)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert check_parity(model, path, images)["probs"] < 1e-4
    with pytest.raises(InvalidArgument):  # the classifier's spatial size is fixed
        session.run(None, {"images": np.zeros((1, 3, 32, 32), np.float32)})


def test_metadata_round_trip(detector_onnx, classifier_onnx, tmp_path) -> None:
    for model, path in (detector_onnx, classifier_onnx):
        assert read_onnx_metadata(path) == model.metadata
        props = {p.key for p in onnx.load(str(path)).metadata_props}
        assert props == {"gesturekit"}
    model = tiny_detector()
    ckpt = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "metadata": model.metadata, "epoch": 1}, ckpt)
    rebuilt = load_model_from_checkpoint(ckpt)
    assert rebuilt.metadata == model.metadata and not rebuilt.training
    assert rebuilt.postprocessing == POST
    images = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        assert all(torch.equal(a, b) for a, b in zip(model.export_forward(images), rebuilt.export_forward(images)))


def test_export_errors(tmp_path) -> None:
    bare = create_model("gesturenet", num_classes=2, pretrained=False)
    with pytest.raises(GesturekitError, match="metadata"):
        export_onnx(bare, tmp_path / "x.onnx", torch.zeros(1, 3, 32, 32))
    assert not list(tmp_path.iterdir())  # nothing half written
    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["probs"])], "g",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, [1])]))
    onnx.save(plain, tmp_path / "plain.onnx")
    with pytest.raises(GesturekitError, match="plain.onnx: no gesturekit metadata"):
        read_onnx_metadata(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(GesturekitError, match="junk.onnx: not a readable ONNX model"):
        read_onnx_metadata(tmp_path / "junk.onnx")
    broken = tiny_classifier()
    broken.metadata = {**broken.metadata, "task": "segmentation"}
    with pytest.raises(GesturekitError, match="metadata.task"):
        export_onnx(broken, tmp_path / "y.onnx", torch.zeros(1, 3, 32, 32))


def test_export_command(tmp_path, data_root) -> None:
    model = tiny_classifier()
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    torch.save({"model": model.state_dict(), "metadata": model.metadata}, ckpt)
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, (frame, boxes) in enumerate(egohands_frames(data_root, 2)):
        x1, y1, x2, y2 = boxes[0]
        Image.fromarray(frame[y1:y2, x1:x2]).save(crops / f"{i}.png")
    app = typer.Typer()
    app.command()(export_cli.export)
    runner = CliRunner()
    out = tmp_path / "cls.onnx"
    result = runner.invoke(app, ["-m", str(ckpt), "-o", str(out), "--images", str(crops)])
    assert result.exit_code == 0, result.output
    assert "2 images of" in result.output and "probs" in result.output
    assert read_onnx_metadata(out) == model.metadata
    ckpt.rename(ckpt.with_name("model.pt"))  # a directory with model.pt names the model too
    result = runner.invoke(app, ["-m", str(ckpt.parent), "-o", str(out), "--precision", "int8"])
    assert isinstance(result.exception, UsageError) and "--calibration-images" in str(result.exception)
    result = runner.invoke(app, ["-m", str(ckpt.parent), "-o", str(out), "--tolerance", "0"])
    assert "random inputs only" in result.output
    assert isinstance(result.exception, GesturekitError) and "parity check failed: probs" in str(result.exception)
    batches, described = export_job.parity_inputs(model.metadata, None, 8)
    assert [b.shape for b in batches] == [(2, 3, 64, 64)] and "random" in described
    batches, _ = export_job.parity_inputs(tiny_detector().metadata, None, 8)
    assert [b.shape for b in batches] == [(2, 3, 128, 160)]
    with pytest.raises(GesturekitError, match="not a file, a directory or a zoo model"):
        export_cli.export("no-such-model", tmp_path / "z.onnx")


def test_classifier_with_a_box_head_exports_probs_and_boxes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("gesturenet", num_classes=2, pretrained=False, box_class=0).eval()
    model.metadata = classifier_metadata("gesturenet", {"num_classes": 2, "box_class": 0}, ["hand", "background"], 64,
                                         {"margin_px": 0.0, "enlarge_ratio": 1.5, "square": True})
    path = export_onnx(model, tmp_path / "verifier.onnx", torch.randn(2, 3, 64, 64))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probs", "boxes"]
    parity = check_parity(model, path, torch.randn(5, 3, 64, 64))  # another batch size: the axis is dynamic
    assert set(parity) == {"probs", "boxes"} and max(parity.values()) < 1e-4
