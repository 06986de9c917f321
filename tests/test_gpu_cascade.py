"""The batched GPU cascade's code on device=cpu: its crops and regions against the CPU path's, and the
whole cascade against the CPU FP32 path on real frames."""

from __future__ import annotations

import itertools
from importlib import resources

import av
import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from gesturekit.boxes import box_iou
from gesturekit.config.app import AppConfig
from gesturekit.config.specs import CropConvention
from gesturekit.data.crops import widen_box
from gesturekit.pipeline.app import build_cascade, load_models
from gesturekit.pipeline.gpu_cascade import GpuCascade, crop_regions, resize_crops, resize_frames


def test_crop_regions_are_widen_box() -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 600, (200, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 300, (200, 2))], 1).astype(np.float32)
    for crop in (CropConvention(margin_px=0, enlarge_ratio=2.0, square=True),
                 CropConvention(margin_px=7.5, enlarge_ratio=1.0, square=False)):
        got = crop_regions(torch.from_numpy(boxes), (480, 640), crop).long().tolist()
        expected = [list(widen_box(tuple(map(float, b)), (640, 480), crop.margin_px, crop.enlarge_ratio, crop.square))
                    for b in boxes]
        assert got == expected


def test_resizes_match_the_uint8_resize() -> None:
    rng = np.random.default_rng(1)
    frames = torch.from_numpy(rng.integers(0, 256, (2, 3, 240, 320), dtype=np.uint8))
    got = resize_frames(frames.float(), 168, 224)
    expected = F.resize(frames, [168, 224], antialias=True).float()
    # equal up to the rounding of the uint8 kernel (which torchvision versions round differently)
    assert (got - expected).abs().max() <= 1 and (got - expected).abs().mean() < 0.1
    regions = torch.tensor([[10, 20, 150, 160], [200, 100, 260, 140], [0, 0, 319, 239]])
    crops = resize_crops(frames.float(), torch.tensor([0, 1, 1]), regions, 96)
    for crop, k, (x1, y1, x2, y2) in zip(crops, (0, 1, 1), regions.tolist()):
        expected = F.resize(frames[k, :, y1:y2, x1:x2], [96, 96], antialias=True).float()
        assert (crop - expected).abs().max() <= 2 and (crop - expected).abs().mean() < 0.1  # uint8 upsampling rounds twice


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Every 25th frame of the packaged portrait clip (one signing hand, 620x1080)."""
    with resources.as_file(resources.files("gesturekit.samples") / "asl_hand.25fps.mp4") as path, \
            av.open(str(path)) as container:
        decoded = container.decode(video=0)
        return [frame.to_ndarray(format="rgb24") for frame in itertools.islice(decoded, 0, None, 25)]


def test_same_hands_as_the_cpu_path(frames: list[np.ndarray]) -> None:
    config = AppConfig.model_validate({"primary": {"backend": "torch"}})
    reference = build_cascade(config, *load_models(config))
    expected = [reference([frame])[0] for frame in frames]
    got = GpuCascade.from_config(config, device="cpu")(frames)
    pairs = []
    for a, b in zip(expected, got):
        assert len(a) == len(b)
        if a:
            iou = box_iou(np.array([h.bbox for h in a]), np.array([h.bbox for h in b]))
            pairs += [(a[i], b[j], iou[i, j]) for i, j in enumerate(iou.argmax(1))]
    assert len(pairs) >= 10
    assert all(iou >= 0.9 for _, _, iou in pairs)
    # near-ties (reference gesture score < 0.6) may flip between the two resizes; confident gestures may not
    confident = [(x, y) for x, y, _ in pairs if x.gesture_score >= 0.6]
    assert len(confident) >= 8 and all(x.gesture == y.gesture for x, y in confident)
    assert max(abs(x.score - y.score) for x, y, _ in pairs) < 0.02
