"""Geometry contracts, as their docstrings state them, on frames of every shape and boxes at every border.

Each test checks a documented property against numbers worked out here (pixel positions, ranges,
multiples), never against another call of the function under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gesturekit.data.crops import widen_box
from gesturekit.data.geometry import PAD_STRIDE, frame_scale, letterbox_geometry
from gesturekit.data.transforms import letterbox
from gesturekit.models.metadata import classifier_metadata, detector_metadata
from gesturekit.runtime.classifier import GestureClassifier
from gesturekit.runtime.detector import HandDetector

SIZES = st.sampled_from([96, 160, 320, 384, 448, 640])


@st.composite
def frame_and_box(draw: st.DrawFn) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
    """A frame ``(W, H)`` from 2 px to 4K, and a box anywhere from fully inside to past any border."""
    width = draw(st.integers(2, 4000))
    height = draw(st.integers(2, 4000))
    x1 = draw(st.floats(-0.5 * width, 1.2 * width, allow_nan=False))
    y1 = draw(st.floats(-0.5 * height, 1.2 * height, allow_nan=False))
    w = draw(st.floats(0.0, 1.5 * width, allow_nan=False))
    h = draw(st.floats(0.0, 1.5 * height, allow_nan=False))
    return (width, height), (x1, y1, x1 + w, y1 + h)


def expected_edges(box, margin: float, ratio: float, square: bool) -> tuple[float, float, float, float]:
    """The docstring's widened region before clipping: enlarged about the centre, squared, then the margin."""
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * ratio, (y2 - y1) * ratio
    if square:
        w = h = max(w, h)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return cx - w / 2 - margin, cy - h / 2 - margin, cx + w / 2 + margin, cy + h / 2 + margin


@settings(max_examples=400, deadline=None)
@given(frame_and_box(), st.floats(0, 64), st.floats(1.0, 3.0), st.booleans())
@example(((2, 2), (0.0, 0.0, 2.0, 2.0)), 0.0, 1.0, False)
@example(((2, 3), (5.0, 5.0, 9.0, 9.0)), 8.0, 1.0, True)
@example(((640, 360), (-50.0, -50.0, -10.0, -10.0)), 0.0, 1.0, False)
@example(((640, 360), (700.0, 400.0, 720.0, 420.0)), 4.0, 1.5, True)
def test_widen_box_stays_inside_the_frame(frame, margin: float, ratio: float, square: bool) -> None:
    """``0 <= x1 < x2 <= W - 1`` and ``0 <= y1 < y2 <= H - 1``, integers, for any box, even one off the frame."""
    (width, height), box = frame
    region = widen_box(box, (width, height), margin, ratio, square)
    assert all(type(v) is int for v in region)
    x1, y1, x2, y2 = region
    assert 0 <= x1 < x2 <= width - 1 and 0 <= y1 < y2 <= height - 1, (region, width, height)


@settings(max_examples=400, deadline=None)
@given(frame_and_box(), st.floats(0, 64), st.floats(1.0, 3.0), st.booleans())
def test_widen_box_is_the_documented_region_where_unclipped(frame, margin: float, ratio: float,
                                                            square: bool) -> None:
    """Away from the borders every edge is the enlarged, squared, margined edge, rounded to a pixel; near a
    border the region still holds the part of the box inside ``[0, W-1] x [0, H-1]``."""
    (width, height), box = frame
    x1, y1, x2, y2 = widen_box(box, (width, height), margin, ratio, square)
    left, top, right, bottom = expected_edges(box, margin, ratio, square)
    if 0.5 <= left and right <= width - 1.5 and right - left >= 1.5:
        assert abs(x1 - left) <= 0.5 and abs(x2 - right) <= 0.5, ((x1, x2), (left, right))
    if 0.5 <= top and bottom <= height - 1.5 and bottom - top >= 1.5:
        assert abs(y1 - top) <= 0.5 and abs(y2 - bottom) <= 0.5, ((y1, y2), (top, bottom))
    bx1, by1 = max(box[0], 0.0), max(box[1], 0.0)
    bx2, by2 = min(box[2], width - 1.0), min(box[3], height - 1.0)
    if bx2 - bx1 >= 1 and by2 - by1 >= 1:  # the box shows on the frame
        assert x1 <= bx1 + 0.5 and bx2 - 0.5 <= x2 and y1 <= by1 + 0.5 and by2 - 0.5 <= y2


@settings(max_examples=200, deadline=None)
@given(st.integers(200, 2000), st.integers(200, 2000), st.floats(1, 60), st.floats(1, 60), st.integers(0, 32),
       st.floats(1.0, 2.0))
def test_widen_box_margin_is_pixels_after_enlargement_and_square_is_square(width, height, bw, bh, margin,
                                                                         ratio) -> None:
    """A box in the middle of a large frame: each side moves out by exactly ``margin`` px (whatever the ratio),
    and ``square`` gives equal sides, the longer enlarged side plus two margins."""
    box = (width / 2 - bw / 2, height / 2 - bh / 2, width / 2 + bw / 2, height / 2 + bh / 2)
    no_margin = widen_box(box, (width, height), 0, ratio)
    with_margin = widen_box(box, (width, height), margin, ratio)
    for a, b, sign in zip(no_margin, with_margin, (-1, -1, 1, 1)):
        assert abs((b - a) - sign * margin) <= 1
    x1, y1, x2, y2 = widen_box(box, (width, height), margin, ratio, square=True)
    side = max(bw, bh) * ratio + 2 * margin
    assert abs((x2 - x1) - side) <= 1 and abs((y2 - y1) - side) <= 1


@pytest.mark.parametrize("width,height", [(2, 2), (2, 500), (500, 2), (3, 7), (640, 360), (620, 1080)])
@pytest.mark.parametrize("where", ["top-left", "top", "top-right", "left", "centre", "right", "bottom-left",
                                   "bottom", "bottom-right"])
def test_widen_box_at_every_border_of_every_frame_shape(width: int, height: int, where: str) -> None:
    """A box straddling each border and corner (and one just outside it) keeps the region on the frame."""
    col = 0 if "left" in where else 2 if "right" in where else 1
    row = 0 if "top" in where else 2 if "bottom" in where else 1
    for inside in (True, False):
        half_w, half_h = max(width / 4, 1), max(height / 4, 1)
        cx = [0.0 if inside else -half_w - 1, width / 2, width if inside else width + half_w + 1][col]
        cy = [0.0 if inside else -half_h - 1, height / 2, height if inside else height + half_h + 1][row]
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        for margin, ratio, square in [(0, 1.0, False), (8, 1.5, True), (100, 3.0, False)]:
            x1, y1, x2, y2 = widen_box(box, (width, height), margin, ratio, square)
            assert 0 <= x1 < x2 <= width - 1 and 0 <= y1 < y2 <= height - 1, (where, inside, box)
            if inside:  # the region lies on the side of the frame the box is on
                assert (x1 == 0) if col == 0 else (x2 == width - 1) if col == 2 else True
                assert (y1 == 0) if row == 0 else (y2 == height - 1) if row == 2 else True


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), SIZES)
@example(360, 640, 448)
@example(480, 640, 448)
@example(1080, 620, 448)
def test_runtime_letterbox_geometry(height: int, width: int, size: int) -> None:
    """The runtime resize keeps the aspect (each side within half a pixel of ``side * scale``), costs the
    pixels of a 4:3 frame with long side ``size`` unless that would make the long side over ``4/3 size``,
    and each padded side is the next multiple of ``PAD_STRIDE``."""
    new_h, new_w, pad_h, pad_w, scale = letterbox_geometry(height, width, size, square=False)
    assert scale == frame_scale(height, width, size) > 0
    for new, side in ((new_h, height), (new_w, width)):
        assert new >= 1 and (new == 1 or abs(new - side * scale) <= 0.5)
    budget = size * size * 3 / 4
    assert height * width * scale * scale <= budget * (1 + 1e-9)
    assert max(height, width) * scale <= size * 4 / 3 * (1 + 1e-9)
    assert math.isclose(height * width * scale * scale, budget, rel_tol=1e-9) or \
        math.isclose(max(height, width) * scale, size * 4 / 3, rel_tol=1e-9)
    for new, pad in ((new_h, pad_h), (new_w, pad_w)):
        assert pad % PAD_STRIDE == 0 and new <= pad < new + PAD_STRIDE
    if height * 4 == width * 3:  # a 4:3 landscape frame: long side exactly ``size``
        assert new_w == size


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), SIZES)
def test_square_letterbox_geometry(height: int, width: int, size: int) -> None:
    """Training's canvas: the long side becomes ``size`` and the canvas is ``size x size``."""
    new_h, new_w, pad_h, pad_w, scale = letterbox_geometry(height, width, size, square=True)
    assert (pad_h, pad_w) == (size, size) and max(new_h, new_w) == size and scale == size / max(height, width)
    assert 1 <= min(new_h, new_w) <= size


@settings(max_examples=30, deadline=None)
@given(st.integers(40, 400), st.integers(40, 400), st.sampled_from([96, 160, 224]), st.booleans(), st.data())
def test_letterbox_moves_a_point_p_to_p_times_scale(height: int, width: int, size: int, square: bool,
                                                  data: st.DataObject) -> None:
    """A white rectangle on black lands at its corners times ``scale`` (within the resize's blur), the padding
    is black, and dividing by ``scale`` maps it back to the frame."""
    x1 = data.draw(st.integers(0, width - 20))
    y1 = data.draw(st.integers(0, height - 20))
    x2 = data.draw(st.integers(x1 + 20, width))
    y2 = data.draw(st.integers(y1 + 20, height))
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    image[:, y1:y2, x1:x2] = 255
    out, scale = letterbox(image, size, square=square)
    new_h, new_w, pad_h, pad_w, _ = letterbox_geometry(height, width, size, square=square)
    assert out.shape == (3, pad_h, pad_w) and out.dtype == torch.uint8
    assert not out[:, new_h:].any() and not out[:, :, new_w:].any()
    bright = (out[0] > 127).nonzero()
    assume(len(bright) > 0)
    top, left = bright.min(0).values.tolist()
    bottom, right = (bright.max(0).values + 1).tolist()
    tolerance = 1.0 + 0.5 * scale  # the antialiased resize smears an edge over about one output pixel
    for found, edge in ((left, x1), (top, y1), (right, x2), (bottom, y2)):
        assert abs(found - edge * scale) <= tolerance, (found, edge * scale)
        assert abs(found / scale - edge) <= tolerance / scale


class BoxBackend:
    """A detector backend whose one box, in input pixels, is given per test."""

    def __init__(self, box: tuple[float, float, float, float], size: int) -> None:
        self.metadata = detector_metadata("detectnet_v2", {}, ["hand"], size,
                                          {"score_threshold": 0.1, "clustering": "nms", "nms_iou_threshold": 0.5})
        self.box = np.array([[box]], np.float32)
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.shapes.append(batch.shape)
        return [np.repeat(self.box, len(batch), 0), np.full((len(batch), 1, 1), 0.9, np.float32)]


@settings(max_examples=100, deadline=None)
@given(st.integers(8, 1500), st.integers(8, 1500), SIZES, st.tuples(*[st.floats(-200, 1200)] * 4))
def test_detector_maps_input_boxes_to_frame_pixels_clipped(height, width, size, corners) -> None:
    """A box the model gives in input pixels comes back divided by the frame's scale, clipped to ``[0, W] x
    [0, H]``; the model saw the padded input of the frame's geometry."""
    x1, x2 = sorted(corners[::2])
    y1, y2 = sorted(corners[1::2])
    assume(x2 - x1 > 1 and y2 - y1 > 1)
    backend = BoxBackend((x1, y1, x2, y2), size)
    found = HandDetector(backend)([np.zeros((height, width, 3), np.uint8)])[0]
    _, _, pad_h, pad_w, scale = letterbox_geometry(height, width, size, square=False)
    assert backend.shapes == [(1, 3, pad_h, pad_w)]
    expected = (min(max(x1 / scale, 0), width), min(max(y1 / scale, 0), height),
                min(max(x2 / scale, 0), width), min(max(y2 / scale, 0), height))
    if expected[2] - expected[0] <= 0 or expected[3] - expected[1] <= 0:
        return  # nothing of the box on the frame: whether it is kept is postprocessing's call
    assert len(found) == 1 and found[0].score == pytest.approx(0.9)
    assert found[0].bbox == pytest.approx(expected, abs=1e-3)
    bx1, by1, bx2, by2 = found[0].bbox
    assert 0 <= bx1 <= bx2 <= width and 0 <= by1 <= by2 <= height


class CropBackend:
    def __init__(self, crop: dict) -> None:
        self.metadata = classifier_metadata("gesturenet", {"num_classes": 2}, ["fist", "random"], 32, crop)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return [np.full((len(batch), 2), 0.5, np.float32)]


@settings(max_examples=200, deadline=None)
@given(frame_and_box(), st.sampled_from([0.0, 4.0, 8.0]), st.sampled_from([1.0, 1.3, 1.5]), st.booleans())
def test_classifier_crop_is_the_documented_region_of_the_frame(frame, margin, ratio, square) -> None:
    """The crop the classifier sees is a block of the frame's own pixels (each pixel here encodes its position)
    whose corners obey ``widen_box``'s contract: on the frame, and the enlarged, squared, margined box where no
    border clips it."""
    (width, height), box = frame
    assume(width * height <= 1_000_000)
    classifier = GestureClassifier(CropBackend({"margin_px": margin, "enlarge_ratio": ratio, "square": square}))
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs % 256, ys % 256, (xs // 256) * 16 + ys // 256], axis=-1).astype(np.uint8)
    crop = classifier.crop_region(image, box).astype(int)
    xs_seen = crop[..., 0] + 256 * (crop[..., 2] // 16)
    ys_seen = crop[..., 1] + 256 * (crop[..., 2] % 16)
    x1, y1 = int(xs_seen[0, 0]), int(ys_seen[0, 0])
    x2, y2 = x1 + crop.shape[1], y1 + crop.shape[0]
    assert (xs_seen == np.arange(x1, x2)[None, :]).all() and (ys_seen == np.arange(y1, y2)[:, None]).all()
    assert 0 <= x1 < x2 <= width - 1 and 0 <= y1 < y2 <= height - 1
    left, top, right, bottom = expected_edges(box, margin, ratio, square)
    if 0.5 <= left and right <= width - 1.5 and right - left >= 1.5:
        assert abs(x1 - left) <= 0.5 and abs(x2 - right) <= 0.5
    if 0.5 <= top and bottom <= height - 1.5 and bottom - top >= 1.5:
        assert abs(y1 - top) <= 0.5 and abs(y2 - bottom) <= 0.5
