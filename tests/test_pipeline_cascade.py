"""The cascade: crop geometry at every frame border, min crop size, one classifier batch."""

from __future__ import annotations

import numpy as np
import pytest

from gesturekit.config.specs import CropConvention
from gesturekit.pipeline.cascade import Cascade, crop_convention
from test_pipeline_fakes import BrightnessClassifier, FakeDetection, FixedDetector

W, H = 64, 48


def coordinate_frame() -> np.ndarray:
    """Pixel (y, x) holds (x, y, 7): a crop's corners tell where it was cut."""
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([xs, ys, np.full_like(xs, 7)], axis=2).astype(np.uint8)


# Boxes touching each border and corner, and one inside the frame.
BOXES = [
    (0.0, 0.0, 20.0, 18.0),     # top-left corner
    (44.0, 0.0, 64.0, 18.0),    # top-right corner, x2 = W
    (0.0, 30.0, 20.0, 48.0),    # bottom-left corner, y2 = H
    (44.0, 30.0, 63.0, 47.0),   # bottom-right, x2 = W - 1
    (2.0, 15.0, 22.0, 33.0),    # near the left edge
    (20.0, 14.0, 40.0, 32.0),   # inside
]


# The crop of each box of BOXES, worked by hand: every side moves out by the margin, then x1, y1 >= 0,
# x2 <= W - 1 = 63 and y2 <= H - 1 = 47 (widen_box's contract).
CROPS = {
    0: [(0, 0, 20, 18), (44, 0, 63, 18), (0, 30, 20, 47), (44, 30, 63, 47), (2, 15, 22, 33), (20, 14, 40, 32)],
    3: [(0, 0, 23, 21), (41, 0, 63, 21), (0, 27, 23, 47), (41, 27, 63, 47), (0, 12, 25, 36), (17, 11, 43, 35)],
    5: [(0, 0, 25, 23), (39, 0, 63, 23), (0, 25, 25, 47), (39, 25, 63, 47), (0, 10, 27, 38), (15, 9, 45, 37)],
    30: [(0, 0, 50, 47), (14, 0, 63, 47), (0, 0, 50, 47), (14, 0, 63, 47), (0, 0, 52, 47), (0, 0, 63, 47)],
}


@pytest.mark.parametrize("margin", sorted(CROPS))
def test_crops_follow_the_margin_convention_at_every_border(margin: int) -> None:
    classifier = BrightnessClassifier()
    cascade = Cascade(FixedDetector(BOXES), classifier, margin_px=margin, min_crop_size=1)
    (hands,) = cascade([coordinate_frame()])
    (crops,) = classifier.calls
    assert len(crops) == len(BOXES) == len(hands)
    for (x1, y1, x2, y2), (ex1, ey1, ex2, ey2), crop, hand in zip(BOXES, CROPS[margin], crops, hands):
        assert crop.shape == (ey2 - ey1, ex2 - ex1, 3)
        assert tuple(crop[0, 0]) == (ex1, ey1, 7)
        assert tuple(crop[-1, -1]) == (ex2 - 1, ey2 - 1, 7)
        assert hand.bbox == (x1, y1, x2, y2)  # the detector's box, not the crop


def test_margin_comes_from_the_classifier_unless_overridden() -> None:
    own = CropConvention(margin_px=4.0, enlarge_ratio=1.0, square=False)
    box = [(20.0, 14.0, 40.0, 32.0)]
    for margin, expected in [(None, (16, 10, 44, 36)), (1.0, (19, 13, 41, 33))]:
        classifier = BrightnessClassifier(own)
        Cascade(FixedDetector(box), classifier, margin_px=margin, min_crop_size=1)([coordinate_frame()])
        crop = classifier.calls[0][0]
        assert (crop[0, 0, 0], crop[0, 0, 1], crop[-1, -1, 0] + 1, crop[-1, -1, 1] + 1) == expected


def test_enlarge_ratio_and_square_are_applied() -> None:
    classifier = BrightnessClassifier(CropConvention(margin_px=0.0, enlarge_ratio=1.5, square=True))
    Cascade(FixedDetector([(20.0, 16.0, 40.0, 28.0)]), classifier, min_crop_size=1)([coordinate_frame()])
    crop = classifier.calls[0][0]
    assert crop.shape[:2] == (30, 30)  # longer side 20 * 1.5, made square about the centre (30, 22)
    assert tuple(crop[0, 0, :2]) == (15, 7)


def test_small_crops_get_no_gesture_and_one_classifier_call_per_batch() -> None:
    boxes = [(0.0, 0.0, 30.0, 30.0), (40.0, 40.0, 46.0, 46.0), (10.0, 5.0, 50.0, 20.0)]
    classifier = BrightnessClassifier()
    cascade = Cascade(FixedDetector(boxes), classifier, min_crop_size=12)
    out = cascade([coordinate_frame(), np.full((H, W, 3), 255, np.uint8), coordinate_frame()])
    assert len(classifier.calls) == 1
    assert len(classifier.calls[0]) == 6  # 2 big crops x 3 frames
    for hands in out:
        assert [h.gesture is None for h in hands] == [False, True, False]
        assert hands[1].gesture_score is None
        assert all(h.track_id is None for h in hands)
    assert out[1][0].gesture == "stop" and out[0][0].gesture == "fist"
    assert out[1][0].gesture_score == pytest.approx(0.8)


def test_score_threshold_and_detection_only() -> None:
    cascade = Cascade(FixedDetector([(0.0, 0.0, 30.0, 30.0)], score=0.3), None, score_threshold=0.5)
    assert cascade([coordinate_frame()]) == [[]]
    (hands,) = Cascade(FixedDetector([(0.0, 0.0, 30.0, 30.0)], score=0.6), None, score_threshold=0.5)(
        [coordinate_frame()])
    assert hands[0].gesture is None and hands[0].score == pytest.approx(0.6)


class ScoredDetector:
    """One box per (score, gesture, probability) row, side by side; the classifier reads the row back."""

    def __init__(self, rows: list[tuple[float, str, float]]) -> None:
        self.rows = rows

    def __call__(self, frames: list[np.ndarray]) -> list[list[FakeDetection]]:
        return [[FakeDetection((4.0 * i, 0.0, 4.0 * i + 4, 4.0), score) for i, (score, _, _) in enumerate(self.rows)]
                for _ in frames]


class RowClassifier:
    """The gesture and probability of the row whose box the crop was cut from (its x offset)."""

    classes = ["fist", "random"]
    crop = CropConvention(margin_px=0.0, enlarge_ratio=1.0, square=False)

    def __init__(self, rows: list[tuple[float, str, float]]) -> None:
        self.rows = rows

    def __call__(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        return [self.rows[int(c[0, 0, 0]) // 4][1:] for c in crops]  # type: ignore[misc]


def test_a_doubtful_hand_stays_when_the_classifier_confirms_its_gesture() -> None:
    rows = [(0.35, "random", 0.9),   # over the threshold: kept whatever its gesture
            (0.25, "fist", 0.9),     # doubtful, a confident gesture: confirmed
            (0.25, "fist", 0.4),     # doubtful, an unsure gesture: dropped
            (0.25, "random", 0.9),   # doubtful, the catch-all class confirms nothing: dropped
            (0.15, "fist", 0.9)]     # under confirm_threshold: dropped
    cascade = Cascade(ScoredDetector(rows), RowClassifier(rows), score_threshold=0.3, min_crop_size=1,
                      confirm_threshold=0.2, confirm_probability=0.5)
    (hands,) = cascade([coordinate_frame()])
    assert [(h.bbox[0], h.gesture) for h in hands] == [(0.0, "random"), (4.0, "fist")]
    plain = Cascade(ScoredDetector(rows), RowClassifier(rows), score_threshold=0.3, min_crop_size=1)
    assert [h.bbox[0] for h in plain([coordinate_frame()])[0]] == [0.0]  # no confirmation without the option
    no_classifier = Cascade(ScoredDetector(rows), None, score_threshold=0.3, confirm_threshold=0.2)
    assert [d.score for d in no_classifier.detect([coordinate_frame()])[0]] == [0.35]  # nothing can confirm


def test_crop_convention_accepts_mappings_and_objects() -> None:
    # The runtime classifier's metadata dict; unknown keys are ignored.
    conv = crop_convention({"margin_px": 2, "enlarge_ratio": 1.2, "square": False, "note": "x"})
    assert (conv.margin_px, conv.enlarge_ratio, conv.square) == (2, 1.2, False)
    conv = crop_convention(CropConvention(margin_px=1.0), margin_px=6)
    assert conv.margin_px == 6 and conv.enlarge_ratio == CropConvention().enlarge_ratio
