"""Deterministic stand-ins for the trained models, and tiny generated videos, for pipeline tests.

The fake detector finds the bright square drawn by :func:`write_video`, so its boxes follow
the frame content through encoding and decoding; the fake classifier labels a crop by its
brightness. Other pipeline test modules import these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from gesturekit.config.specs import CropConvention


@dataclass(frozen=True)
class FakeDetection:
    bbox: tuple[float, float, float, float]
    score: float
    label: str = "hand"


class SquareDetector:
    """Detect the pixels brighter than 200 in every channel: one box per frame (or none)."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, frames: list[np.ndarray]) -> list[list[FakeDetection]]:
        self.batch_sizes.append(len(frames))
        out = []
        for frame in frames:
            ys, xs = np.nonzero((frame > 200).all(axis=2))
            if len(xs) == 0:
                out.append([])
                continue
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            out.append([FakeDetection(box, 0.9)])
        return out


class FixedDetector:
    """Return the same boxes for every frame."""

    def __init__(self, boxes: list[tuple[float, float, float, float]], score: float = 0.8) -> None:
        self.boxes, self.score = boxes, score

    def __call__(self, frames: list[np.ndarray]) -> list[list[FakeDetection]]:
        return [[FakeDetection(b, self.score) for b in self.boxes] for _ in frames]


class BrightnessClassifier:
    """``stop`` for crops brighter than 100 on average, else ``fist``; records every call."""

    classes = ["fist", "stop"]

    def __init__(self, crop: CropConvention | None = None) -> None:
        self.crop = crop or CropConvention(margin_px=0.0, enlarge_ratio=1.0, square=False)
        self.calls: list[list[np.ndarray]] = []

    def __call__(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        self.calls.append([c.copy() for c in crops])
        return [("stop", 0.8) if c.mean() > 100 else ("fist", 0.6) for c in crops]


def video_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i``: a dark background and a white 12x10 square moving right one pixel a frame."""
    img = np.full((height, width, 3), 20, np.uint8)
    img[:, :, 2] = (i * 5) % 120
    x, y = 4 + i, height // 4
    img[y:y + 10, x:x + 12] = 255
    return img


def write_video(path: Path, frames: int, width: int = 64, height: int = 48, fps: int = 10,
                codec: str = "mpeg4") -> Path:
    """Write ``frames`` frames of :func:`video_frame` with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {"crf": "10"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(video_frame(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_square_detector_finds_the_square_after_encoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 3)
    with av.open(str(path)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    boxes = [dets[0].bbox for dets in SquareDetector()(images)]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        assert abs(x1 - (4 + i)) <= 1 and abs(x2 - (16 + i)) <= 1
        assert abs(y1 - 12) <= 1 and abs(y2 - 22) <= 1
