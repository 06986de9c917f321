"""The batched GPU cascade's code on device=cpu: its crops and regions against the CPU path's, and the
whole cascade against the CPU FP32 path on real frames."""

from __future__ import annotations

import itertools
from importlib import resources

import av
import numpy as np
import pytest
import torch

from gesturekit.boxes import box_iou
from gesturekit.config.app import AppConfig
from gesturekit.config.specs import CropConvention
from gesturekit.data.crops import widen_box
from gesturekit.pipeline.app import build_cascade, load_models
from gesturekit.pipeline.gpu_cascade import (GpuCascade, crop_regions, exact_dtype, resize_crops, resize_filters,
                                             resize_frames)
from gesturekit.runtime import preprocess


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


@pytest.mark.parametrize(("in_size", "out_size"), [(n, m) for n in (1, 2, 7, 31, 160, 161, 333, 620, 1080, 3000)
                                                     for m in (1, 96, 160, 257, 448)])
def test_resize_filters_are_the_runtimes_weights(in_size: int, out_size: int) -> None:
    index, weights, bits = preprocess._weights(in_size, out_size)
    expected = np.zeros((out_size, in_size))
    np.add.at(expected, (np.arange(out_size)[:, None].repeat(index.shape[1], 1), index), weights)
    matrix, got_bits = resize_filters(torch.tensor([3]), torch.tensor([3 + in_size]), in_size + 5, out_size)
    assert int(got_bits[0]) == bits
    assert np.array_equal(matrix[0, :, 3:3 + in_size].numpy(), expected)
    assert not matrix[0, :, :3].any() and not matrix[0, :, 3 + in_size:].any()


@pytest.mark.parametrize("size", [32, 96, 160, 224, 448])
def test_float32_sums_are_exact_up_to_shrinking_four_times(size: int) -> None:
    assert max(preprocess._weights(length, size)[2] for length in range(1, 4 * size + 1)) <= 16  # 255 * 2**16 < 2**24
    assert exact_dtype(4 * size, size) == torch.float32 and exact_dtype(4 * size + 1, size) == torch.float64


def test_resizes_are_the_cpu_paths_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    for height, width, new_h, new_w in [(1080, 620, 448, 257), (240, 320, 168, 224), (37, 91, 160, 160),
                                        (2000, 1500, 448, 336)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        got = resize_frames(torch.from_numpy(image).permute(2, 0, 1)[None].float(), new_h, new_w)
        assert np.array_equal(got[0].permute(1, 2, 0).numpy(), preprocess.resize(image, new_h, new_w))
    frames = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    regions = torch.tensor([[10, 20, 150, 160], [200, 100, 260, 140], [0, 0, 319, 239], [5, 5, 6, 6]])
    crops = resize_crops(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), torch.tensor([0, 1, 1, 0]), regions, 96)
    for crop, k, (x1, y1, x2, y2) in zip(crops, (0, 1, 1, 0), regions.tolist()):
        expected = preprocess.resize(np.ascontiguousarray(frames[k, y1:y2, x1:x2]), 96, 96)
        assert np.array_equal(crop.permute(1, 2, 0).numpy(), expected)


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
    assert all(x.gesture == y.gesture for x, y, _ in pairs)  # the same pixels: near-ties fall the same way
    assert max(abs(x.score - y.score) for x, y, _ in pairs) < 1e-4


def test_the_app_runs_the_batched_cascade_and_tracks_as_on_the_cpu_path() -> None:
    from gesturekit.pipeline.recognizer import GestureRecognizer

    batched, plain = GestureRecognizer(backend="torch", primary__batched=True), GestureRecognizer(backend="torch")
    assert isinstance(batched.cascade, GpuCascade) and not isinstance(plain.cascade, GpuCascade)
    with resources.as_file(resources.files("gesturekit.samples") / "asl_hand.25fps.mp4") as path:
        got = [r.hands for r in batched.stream(path, max_frames=30)]
        expected = [r.hands for r in plain.stream(path, max_frames=30)]
    assert len(got) == len(expected) == 30 and sum(map(len, expected)) >= 25
    for a, b in zip(expected, got):
        assert [(h.gesture, h.track_id) for h in a] == [(h.gesture, h.track_id) for h in b]
        assert all(np.allclose(x.bbox, y.bbox, atol=0.01) and abs(x.score - y.score) < 1e-4 for x, y in zip(a, b))
