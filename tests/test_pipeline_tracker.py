"""IoU tracker: stable ids, max_age, matching, and the gesture vote against flicker."""

from __future__ import annotations

import numpy as np
import pytest

from gesturekit.boxes import box_iou
from gesturekit.pipeline.predictions import HandPrediction
from gesturekit.pipeline.tracker import IoUTracker, match


def hand(x: float, y: float, gesture: str | None = "fist", p: float | None = 0.9, size: float = 20) -> HandPrediction:
    return HandPrediction((x, y, x + size, y + size), 0.9, gesture, p)


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_two_moving_hands_keep_their_ids(method: str) -> None:
    tracker = IoUTracker(iou_threshold=0.3, max_age=2, vote_window=3, method=method)
    seen = []
    for t in range(10):
        # Order swaps every frame: ids must follow the boxes, not the list position.
        hands = [hand(10 + 2 * t, 10), hand(100 - 2 * t, 50)]
        out = tracker.update(hands[::-1] if t % 2 else hands)
        seen.append({o.bbox[1]: o.track_id for o in out})
    assert all(s == {10: 0, 50: 1} for s in seen)


def test_max_age_keeps_a_briefly_lost_hand_and_ends_an_old_one() -> None:
    tracker = IoUTracker(max_age=2)
    assert tracker.update([hand(10, 10)])[0].track_id == 0
    tracker.update([])
    tracker.update([])
    assert tracker.update([hand(11, 10)])[0].track_id == 0  # unseen 2 frames: same track
    for _ in range(3):
        tracker.update([])
    assert tracker.update([hand(11, 10)])[0].track_id == 1  # unseen 3 frames: a new track


def test_a_one_frame_flicker_is_voted_away() -> None:
    tracker = IoUTracker(vote_window=5)
    labels = ["fist", "fist", "stop", "fist", "fist", "fist"]
    scores = [0.8, 0.7, 0.95, 0.8, 0.6, 0.9]
    out = [tracker.update([hand(10 + t, 10, g, p)])[0] for t, (g, p) in enumerate(zip(labels, scores))]
    assert [o.gesture for o in out] == ["fist"] * 6
    assert {o.track_id for o in out} == {0}
    # Frame 2: window (fist .8, fist .7, stop .95) -> fist with (0.8 + 0.7) / 3.
    assert out[2].gesture_score == pytest.approx(1.5 / 3)
    assert out[0].gesture_score == pytest.approx(0.8)


def test_a_lasting_change_wins_the_vote_and_no_vote_keeps_null() -> None:
    tracker = IoUTracker(vote_window=3)
    labels = ["fist", "fist", "stop", "stop", "stop"]
    out = [tracker.update([hand(10, 10, g, 0.9)])[0].gesture for g in labels]
    assert out == ["fist", "fist", "fist", "stop", "stop"]
    small = tracker.update([hand(10, 10, None, None)])[0]
    assert small.gesture is None and small.gesture_score is None and small.track_id == 0


def test_without_smoothing_the_label_passes_through() -> None:
    tracker = IoUTracker(vote_window=1)
    out = [tracker.update([hand(10, 10, g, 0.9)])[0].gesture for g in ["fist", "stop", "fist"]]
    assert out == ["fist", "stop", "fist"]


def test_iou_and_matching() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[0, 0, 10, 5], [100, 100, 110, 110]], float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 2)
    assert iou[0, 0] == pytest.approx(0.5) and iou[1, 1] == 0
    assert box_iou(a, np.zeros((0, 4))).shape == (2, 0)
    # Greedy takes the best pair first; Hungarian maximises the total.
    m = np.array([[0.9, 0.8], [0.85, 0.0]])
    assert sorted(match(m, 0.3, "greedy")) == [(0, 0)]
    assert sorted(match(m, 0.3, "hungarian")) == [(0, 1), (1, 0)]
