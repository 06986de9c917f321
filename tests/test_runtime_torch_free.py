"""The ONNX Runtime path is the product a user installs: it imports no torch, torchvision, scipy or
matplotlib, and its numpy preprocessing is torchvision's bit for bit (the models' evaluation input)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment as scipy_assignment
from torchvision.transforms.v2 import functional as F

from gesturekit.data.geometry import PAD_STRIDE, letterbox_geometry
from gesturekit.images import read_rgb
from gesturekit.models.postprocess import nms
from gesturekit.models.zoo import ONNX, zoo_path
from gesturekit.pipeline.tracker import linear_sum_assignment
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend, optimized_graph_path
from gesturekit.runtime.preprocess import normalized_canvas, resize

TRAINING_ONLY = ("torch", "torchvision", "scipy", "matplotlib", "onnx", "tensorboard", "torch_pruning")

RUN = """
import json, sys
from gesturekit.cli.main import main
args = sys.argv[1:]
for argv in (args[:4], args[4:]):
    sys.argv = ["gesturekit", "infer", *argv]
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
from gesturekit import GestureRecognizer
rec = GestureRecognizer()
hands = rec.recognize(args[1]).hands
frames = sum(1 for _ in rec.stream(args[4], max_frames=3))
print(json.dumps({"modules": sorted(m for m in %r if m in sys.modules), "hands": len(hands), "frames": frames}))
"""


def test_infer_and_the_api_import_no_training_library(data_root: Path, tmp_path: Path) -> None:
    image = next((data_root / "hagrid" / "frames").glob("*.jpg"))
    video = data_root / "video" / "asl_hand.25fps.mp4"
    args = ["-q", str(image), "--out-json", str(tmp_path / "image.jsonl"),
            str(video), "--max-frames", "5", "--out-json", str(tmp_path / "video.jsonl")]
    done = subprocess.run([sys.executable, "-c", RUN % (TRAINING_ONLY,), *args], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["modules"] == []
    assert report["hands"] >= 1 and report["frames"] == 3
    assert len((tmp_path / "video.jsonl").read_text().splitlines()) == 5
    assert json.loads((tmp_path / "image.jsonl").read_text())["detections"]


BLOCKED = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in %r:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
sys.argv[0] = "gesturekit"
from gesturekit.cli.main import main
main()
"""


def gesturekit_without_training_libraries(*args: str) -> subprocess.CompletedProcess:
    """``gesturekit ARGS`` in a process where the training libraries cannot be imported (a base install)."""
    return subprocess.run([sys.executable, "-c", BLOCKED % (TRAINING_ONLY,), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_base_install_runs_infer_and_names_the_extra_other_commands_need(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    done = gesturekit_without_training_libraries("infer", "--sample", "--max-frames", "3", "--out-json", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 3
    spec = Path(__file__).resolve().parents[1] / "src" / "gesturekit" / "specs" / "detector.yaml"
    done = gesturekit_without_training_libraries("train", "detector", "-e", str(spec), "-r", str(tmp_path / "run"))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: gesturekit train needs: pip install 'gesturekit[train]'"
    done = gesturekit_without_training_libraries("infer", "--sample", "--backend", "torch", "--detector", "hand-detector")
    assert done.returncode == 1 and done.stderr.strip().endswith("needs torch: pip install 'gesturekit[train]'")


def torchvision_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """What training and evaluation feed the models: torchvision's antialiased resize of a uint8 image."""
    resized = F.resize(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), [height, width], antialias=True)
    return resized.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("size", [(1080, 620, 496, 285), (1080, 620, 366, 210), (480, 640, 352, 448),
                                  (360, 640, 306, 544), (37, 50, 64, 64), (600, 500, 128, 128), (2000, 1500, 96, 72),
                                  (100, 100, 100, 50), (100, 90, 40, 90), (1, 1, 160, 160), (3, 200, 1, 7),
                                  (641, 641, 160, 160), (643, 640, 160, 160), (1700, 999, 160, 160), (161, 159, 160, 160)])
def test_resize_is_torchvisions_bit_for_bit(size: tuple[int, int, int, int]) -> None:
    height, width, new_h, new_w = size
    image = np.random.default_rng(height * width).integers(0, 256, (height + 9, width + 7, 3), dtype=np.uint8)
    crop = image[5:5 + height, 3:3 + width]  # a strided view, as the classifier's crops are
    assert np.array_equal(resize(crop, new_h, new_w), torchvision_resize(crop, new_h, new_w))
    extremes = np.where(crop > 127, 255, 0).astype(np.uint8)  # the largest fixed-point sums, and 0s beside them
    assert np.array_equal(resize(extremes, new_h, new_w), torchvision_resize(extremes, new_h, new_w))


def test_resize_is_torchvisions_on_random_sizes() -> None:
    """Shrinking up to 4x (float32 sums), past it (float64) and enlarging, each axis apart, at odd sizes."""
    rng = np.random.default_rng(25)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(1, 700, 2))
        new_h, new_w = (int(v) for v in rng.integers(1, 400, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert np.array_equal(resize(image, new_h, new_w), torchvision_resize(image, new_h, new_w)), (height, width,
                                                                                                     new_h, new_w)


def test_resize_is_torchvisions_on_real_frames(data_root: Path) -> None:
    """The clip's frames at the detector's input sizes, and hand-sized crops of them at the classifier's."""
    import av

    with av.open(str(data_root / "video" / "asl_hand.25fps.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(40), container.decode(video=0))]
    frames = frames[::4] + [np.asarray(read_rgb(p)) for p in sorted((data_root / "hagrid" / "frames").glob("*.jpg"))[:4]]
    rng = np.random.default_rng(0)
    for frame in frames:
        height, width = frame.shape[:2]
        for input_size in (320, 384, 512):
            new_h, new_w, *_ = letterbox_geometry(height, width, input_size, PAD_STRIDE, square=False)
            assert np.array_equal(resize(frame, new_h, new_w), torchvision_resize(frame, new_h, new_w))
        x1, y1 = (int(v) for v in rng.integers(0, (width // 2, height // 2)))
        side = int(rng.integers(20, min(width - x1, height - y1)))
        crop = frame[y1:y1 + side, x1:x1 + side]
        assert np.array_equal(resize(crop, 160, 160), torchvision_resize(crop, 160, 160))


def test_nms_is_torchvisions() -> None:
    """Per-class greedy NMS as ``torchvision.ops.batched_nms`` keeps, best first (distinct scores: no ties to order)."""
    from torchvision.ops import batched_nms

    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(0, 250))
        corners = rng.uniform(0, 400, (n, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(0, 120, (n, 2))], 1).astype(np.float32)
        if trial % 4 == 0:
            boxes = boxes.round(-1)  # identical and touching boxes
        scores = rng.permutation(n).astype(np.float32) / max(n, 1)
        labels = rng.integers(0, 3, n)
        threshold = float(rng.choice([0.0, 0.3, 0.5, 0.9]))
        expected = batched_nms(torch.from_numpy(boxes).double(), torch.from_numpy(scores).double(), torch.from_numpy(labels),
                               threshold)
        assert nms(boxes, scores, labels, threshold).tolist() == expected.tolist()


def test_normalized_canvas_pads_with_normalised_black() -> None:
    image = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    canvas = normalized_canvas(image, 64, 64)
    padded = F.pad(torch.from_numpy(image).permute(2, 0, 1), [0, 0, 14, 27], fill=0)
    expected = F.normalize(padded.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert canvas.shape == (3, 64, 64) and canvas.dtype == np.float32 and canvas.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(canvas, expected.numpy(), rtol=0, atol=1e-6)


def test_tracker_assignment_is_optimal() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        rows, cols = rng.integers(1, 7, 2)
        cost = rng.random((rows, cols))
        if trial % 3 == 0:
            cost = cost.round(1)  # ties
        r, c = linear_sum_assignment(cost)
        sr, sc = scipy_assignment(cost)
        assert len(r) == min(rows, cols) == len(set(r.tolist())) == len(set(c.tolist()))
        assert cost[r, c].sum() == pytest.approx(cost[sr, sc].sum())


def test_the_optimized_graph_is_cached_and_gives_the_same_outputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GESTUREKIT_CACHE_DIR", str(tmp_path))
    model = zoo_path("gesture-classifier-int8") / ONNX
    batch = np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)
    first = OnnxRuntimeBackend(model, threads=1)
    cached = optimized_graph_path(model)
    assert cached is not None and cached.is_file() and cached.parent.parent == tmp_path
    again = OnnxRuntimeBackend(model, threads=1)  # from the cache: no optimization at load
    assert again.session.get_session_options().graph_optimization_level == 0  # ORT_DISABLE_ALL
    assert again.metadata == first.metadata
    for a, b in zip(first.infer(batch), again.infer(batch)):
        np.testing.assert_array_equal(a, b)
    cached.write_bytes(b"damaged")  # a broken cache file is rebuilt, not an error
    rebuilt = OnnxRuntimeBackend(model, threads=1)
    np.testing.assert_array_equal(rebuilt.infer(batch)[0], first.infer(batch)[0])
    assert cached.stat().st_size > 1000
    monkeypatch.setenv("GESTUREKIT_CACHE_DIR", "")
    assert optimized_graph_path(model) is None
