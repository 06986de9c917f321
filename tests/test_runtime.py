"""Runtime backends, the hand detector and gesture classifier wrappers, and model loading."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gesturekit.config.specs import CropConvention
from gesturekit.data.transforms import (
    PAD_STRIDE,
    classification_eval_transform,
    crop_roi,
    detection_eval_transform,
    letterbox,
    normalize,
)
from gesturekit.errors import GesturekitError
from gesturekit.export.onnx import export_onnx
from gesturekit.models import create_model, zoo
from gesturekit.models.metadata import classifier_metadata, detector_metadata
from gesturekit.runtime.classifier import GestureClassifier, preprocess_crop
from gesturekit.runtime.detector import Detection, HandDetector, preprocess_frame
from gesturekit.runtime.loading import load_backend, load_classifier, load_detector, resolve_model_file
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend
from gesturekit.runtime.torch_backend import TorchBackend

DET_KWARGS = {"num_classes": 1, "backbone": "mobilenet_v2", "head_channels": 16, "strides": [8]}
POST = {"score_threshold": 0.005, "clustering": "nms", "nms_iou_threshold": 0.5, "max_detections": 20}
CLS_KWARGS = {"num_classes": 6, "backbone": "mobilenet_v2"}
GESTURES = ["thumbs_up", "fist", "stop", "ok", "two", "random"]
CROP = {"margin_px": 4.0, "enlarge_ratio": 1.3, "square": True}


def save_model_dir(model: torch.nn.Module, root: Path, example: torch.Tensor) -> Path:
    """``root/model.pt`` (checkpoint) and ``root/model.onnx``."""
    root.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "metadata": model.metadata}, root / "model.pt")
    export_onnx(model, root / "model.onnx", example)
    return root


@pytest.fixture(scope="module")
def frames(data_root) -> list[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """Three EgoHands frames (RGB) with their hand boxes."""
    boxes: dict[str, list] = {}
    with open(data_root / "egohands" / "train_labels.csv") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["filename"], []).append(tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")))
    names = sorted(boxes)[:3]
    return [(np.asarray(Image.open(data_root / "egohands" / "images" / n).convert("RGB")), boxes[n]) for n in names]


def spread_scores(detector: torch.nn.Module, images: torch.Tensor) -> None:
    """Random init gives near-equal scores (ties for NMS): scale the coverage layer so that its
    logits on ``images`` have std 2."""
    layer = detector.heads["8"].coverage
    with torch.no_grad():
        logits = detector.eval().forward_levels(images)[0][1] - layer.bias.view(1, -1, 1, 1)
        layer.weight.mul_(2.0 / logits.std())
        layer.bias.zero_()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, frames) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    det = create_model("detectnet_v2", **DET_KWARGS, pretrained=False, postprocessing=POST)
    spread_scores(det, torch.from_numpy(np.stack([preprocess_frame(f, 160)[0] for f, _ in frames])))
    det.metadata = detector_metadata("detectnet_v2", DET_KWARGS, ["hand"], 160, POST)
    cls = create_model("gesturenet", **CLS_KWARGS, pretrained=False)
    cls.metadata = classifier_metadata("gesturenet", CLS_KWARGS, GESTURES, 64, CROP)
    return {
        "detector": save_model_dir(det.eval(), root / "hand-detector", torch.zeros(1, 3, 96, 160)),
        "classifier": save_model_dir(cls.eval(), root / "gesture-classifier", torch.zeros(1, 3, 64, 64)),
    }


def test_backends_agree_on_random_and_real_images(model_dirs, frames) -> None:
    real = {
        "detector": np.stack([preprocess_frame(f, 160)[0] for f, _ in frames]),
        "classifier": np.stack([preprocess_crop(f[y1:y2, x1:x2], 64) for f, b in frames for x1, y1, x2, y2 in b[:1]]),
    }
    rng = np.random.default_rng(0)
    for task, path in model_dirs.items():
        ort_backend = OnnxRuntimeBackend(path / "model.onnx", threads=1)
        torch_backend = load_backend(path / "model.pt", backend="torch")
        assert isinstance(torch_backend, TorchBackend) and ort_backend.metadata == torch_backend.metadata
        for batch in (real[task], rng.standard_normal(real[task].shape, dtype=np.float32)):
            got, want = ort_backend.infer(batch), torch_backend.infer(batch)
            assert len(got) == len(want) == (2 if task == "detector" else 1)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype == np.float32 and g.shape == w.shape
                assert np.abs(g - w).max() < 1e-4


def test_detector_same_detections_with_both_backends(model_dirs, frames) -> None:
    images = [f for f, _ in frames] + [np.ascontiguousarray(frames[0][0][:200, :300])]
    by_ort = load_detector(model_dirs["detector"], threads=1)(images)
    by_torch = load_detector(model_dirs["detector"] / "model.pt", backend="torch")(images)
    assert len(by_ort) == len(images) and sum(map(len, by_ort)) > 0
    for image, a, b in zip(images, by_ort, by_torch):
        assert len(a) == len(b)
        for da, db in zip(a, b):
            assert da.label == db.label == "hand" and abs(da.score - db.score) < 1e-5
            assert np.abs(np.subtract(da.bbox, db.bbox)).max() < 1e-3
            x1, y1, x2, y2 = da.bbox
            assert 0 <= x1 <= x2 <= image.shape[1] and 0 <= y1 <= y2 <= image.shape[0]
    scores = sorted({d.score for dets in by_ort for d in dets})
    cut = (scores[len(scores) // 2] + scores[len(scores) // 2 + 1]) / 2  # between two scores, mid-way up
    fewer = load_detector(model_dirs["detector"], score_threshold=cut)(images)
    assert fewer == [[d for d in dets if d.score > cut] for dets in by_ort]
    assert 0 < sum(map(len, fewer)) < sum(map(len, by_ort)), [len(d) for d in fewer]


class FakeDetectorBackend:
    """Returns fixed boxes in letterboxed input pixels and records the batch shapes it sees."""

    def __init__(self, boxes: list[list[float]], scores: list[float]) -> None:
        self.metadata = detector_metadata("detectnet_v2", {}, ["hand", "face"], 160,
                                          {"score_threshold": 0.1, "nms_iou_threshold": 0.5})
        self.boxes = np.array(boxes, np.float32)
        self.scores = np.array([[s, 0.0] for s in scores], np.float32)
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.shapes.append(batch.shape)
        n = len(batch)
        return [np.repeat(self.boxes[None], n, 0), np.repeat(self.scores[None], n, 0)]


@pytest.mark.parametrize("shape", [(480, 640), (1080, 620), (37, 50)])
def test_runtime_frame_preprocessing_is_evaluation_s(shape: tuple[int, int]) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    image, scale = preprocess_frame(frame, 160)
    expected, expected_scale = letterbox(torch.from_numpy(frame).permute(2, 0, 1), 160, stride=PAD_STRIDE, square=False)
    assert scale == expected_scale and image.flags["C_CONTIGUOUS"]
    torch.testing.assert_close(torch.from_numpy(image), normalize(expected), rtol=0, atol=1e-6)
    # training validation sees the frame as the runtime does
    validation, _ = detection_eval_transform(160)(torch.from_numpy(frame).permute(2, 0, 1),
                                                  {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)})
    torch.testing.assert_close(validation, torch.from_numpy(image), rtol=0, atol=1e-6)


def test_detector_maps_boxes_back_to_frame_pixels() -> None:
    backend = FakeDetectorBackend([[40, 20, 80, 60], [100, 50, 170, 100], [0, 0, 10, 10]], [0.9, 0.8, 0.05])
    detector = HandDetector(backend)
    landscape = np.zeros((480, 640, 3), np.uint8)  # scale 0.25: letterboxed to 160x120, padded to 160x128
    tall = np.zeros((500, 240, 3), np.uint8)  # scale 0.4 (the pixels of 160x120): 96x200, padded to 96x224
    out = detector([landscape, tall, landscape])
    assert sorted(backend.shapes) == [(1, 3, 224, 96), (2, 3, 128, 160)]
    assert out[0] == out[2] == [
        Detection((160.0, 80.0, 320.0, 240.0), pytest.approx(0.9), "hand"),
        Detection((400.0, 200.0, 640.0, 400.0), pytest.approx(0.8), "hand"),  # clipped to the frame
    ]
    assert out[1][0].bbox == pytest.approx((100.0, 50.0, 200.0, 150.0))
    assert out[1][1].bbox == pytest.approx((240.0, 125.0, 240.0, 250.0))
    assert [len(d) for d in HandDetector(backend, score_threshold=0.85)([landscape])] == [1]
    assert detector([]) == []


def test_runtime_refuses_other_normalisation_and_wrong_task() -> None:
    backend = FakeDetectorBackend([[0, 0, 1, 1]], [0.5])
    backend.metadata = {**backend.metadata, "mean": [0.5, 0.5, 0.5]}
    with pytest.raises(GesturekitError, match="metadata.mean/std"):
        HandDetector(backend)
    with pytest.raises(GesturekitError, match="a detection model, expected a classification model"):
        GestureClassifier(FakeDetectorBackend([[0, 0, 1, 1]], [0.5]))


def test_classifier_crops_and_preprocesses_like_training(model_dirs, frames) -> None:
    classifier = load_classifier(model_dirs["classifier"], threads=1)
    assert classifier.classes == GESTURES and classifier.crop == CROP
    frame = frames[0][0]
    box = (100.0, 50.0, 180.0, 130.0)
    crop = classifier.crop_region(frame, box)
    # centre (140, 90), 80 x 80 enlarged 1.3x to 104 x 104, margin 4 on each side: x 84..196, y 34..146
    assert np.array_equal(crop, frame[34:146, 84:196])
    tensor = torch.from_numpy(frame.copy()).permute(2, 0, 1)
    assert torch.equal(torch.from_numpy(crop.copy()).permute(2, 0, 1), crop_roi(tensor, box, CropConvention(**CROP)))
    expected = classification_eval_transform(64, CropConvention(**CROP))(tensor, box)
    torch.testing.assert_close(torch.from_numpy(preprocess_crop(crop, 64)), expected, rtol=0, atol=1e-6)

    crops = [classifier.crop_region(f, b) for f, bs in frames for b in bs]
    classifier.max_batch = 2
    results = classifier(crops)
    probs = classifier.probabilities(crops)
    assert len(results) == len(crops) == len(probs) > 2
    for (label, p), row in zip(results, probs):
        assert label == GESTURES[int(row.argmax())] and p == pytest.approx(float(row.max()))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert classifier([]) == []


def test_loading_resolution_and_errors(model_dirs, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(zoo, "ZOO_ROOT", model_dirs["detector"].parent)
    detector = load_detector("hand-detector")
    assert isinstance(detector.backend, OnnxRuntimeBackend)
    assert isinstance(load_detector("hand-detector", backend="torch").backend, TorchBackend)
    with pytest.raises(GesturekitError, match=r"nope: not a file.*zoo: gesture-classifier, hand-detector"):
        load_detector("nope")
    with pytest.raises(GesturekitError, match="a classification model, expected a detection model"):
        load_detector("gesture-classifier")
    with pytest.raises(GesturekitError, match=r"model.pt: the onnxruntime backend needs a \.onnx file"):
        load_detector(model_dirs["detector"] / "model.pt")
    with pytest.raises(GesturekitError, match=r"model.onnx: the torch backend needs a \.pt file"):
        load_detector(model_dirs["detector"] / "model.onnx", backend="torch")
    with pytest.raises(GesturekitError, match="needs model.onnx"):
        load_detector(tmp_path)
    only_onnx = tmp_path / "int8"
    only_onnx.mkdir()
    (only_onnx / "model.onnx").write_bytes((model_dirs["detector"] / "model.onnx").read_bytes())
    with pytest.raises(GesturekitError, match=r"needs model.pt; int8 has only model.onnx\)"):
        load_detector(only_onnx, backend="torch")
    with pytest.raises(GesturekitError, match="unknown backend"):
        load_detector("hand-detector", backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(GesturekitError, match="half precision needs a CUDA device"):
        load_detector("hand-detector", backend="torch", half=True)
    with pytest.raises(GesturekitError, match="CUDA graphs need a CUDA device"):
        TorchBackend(load_detector("hand-detector", backend="torch").backend.model, cuda_graphs=True)
    monkeypatch.setattr(zoo, "ZOO_ROOT", tmp_path / "absent")
    with pytest.raises(GesturekitError, match=r"zoo: empty"):
        load_classifier("gesture-classifier")


@pytest.mark.parametrize(("backend", "device"), [("onnxruntime", "cpu"), ("onnxruntime", "cuda"), ("torch", "cpu")])
def test_the_default_models_ship_the_file_their_backend_loads(backend: str, device: str) -> None:
    for name in zoo.default_models(backend, device).values():
        assert resolve_model_file(name, backend).is_file()
