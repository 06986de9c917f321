"""An IoU tracker with a gesture vote: stable hand ids and labels that do not flicker.

Each source of video frames gets its own :class:`IoUTracker`. Detections are matched to the
tracks' last boxes by IoU (Hungarian assignment or greedy), unmatched detections start new
tracks, and a track unseen for more than ``max_age`` frames ends. The gesture reported for a
track is the label with the largest summed ``gesture_score`` over its last ``vote_window``
frames; its score is that sum divided by the number of frames in the window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from gesturekit.boxes import box_iou
from gesturekit.pipeline.predictions import HandPrediction


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of a minimum-cost assignment of a [N, M] matrix (as scipy's function of that
    name, without importing scipy into the runtime): the Hungarian method with potentials, O(N^2 M),
    for the few hands of a frame."""
    flip = cost.shape[0] > cost.shape[1]
    a = np.asarray(cost.T if flip else cost, np.float64)
    n, m = a.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, np.int64)  # owner[j]: the row (1-based) given column j; column 0 is the root
    way = np.zeros(m + 1, np.int64)
    for row in range(1, n + 1):
        owner[0], col = row, 0
        slack, used = np.full(m + 1, np.inf), np.zeros(m + 1, bool)
        while owner[col]:
            used[col] = True
            i = owner[col]
            reduced = a[i - 1] - u[i] - v[1:]
            free = ~used[1:]
            better = free & (reduced < slack[1:])
            slack[1:][better], way[1:][better] = reduced[better], col
            candidates = np.where(free, slack[1:], np.inf)
            nxt = int(np.argmin(candidates)) + 1
            delta = candidates[nxt - 1]
            u[owner[used]] += delta
            v[used] -= delta
            slack[1:][free] -= delta
            col = nxt
        while col:
            prev = way[col]
            owner[col] = owner[prev]
            col = prev
    cols = np.flatnonzero(owner[1:])
    rows = owner[1:][cols] - 1
    if flip:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order], cols[order]


def match(iou: np.ndarray, threshold: float, method: Literal["hungarian", "greedy"]) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` of an IoU matrix with IoU >= ``threshold``, each row/col used once."""
    if iou.size == 0:
        return []
    if method == "hungarian":
        rows, cols = linear_sum_assignment(-iou)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= threshold]
    pairs = []
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < threshold:
            break
        if r not in used_rows and c not in used_cols:
            pairs.append((r, c))
            used_rows.add(r)
            used_cols.add(c)
    return pairs


@dataclass
class Track:
    """One tracked hand: its id, last box, frames since last seen, recent gestures."""

    track_id: int
    bbox: tuple[float, float, float, float]
    votes: deque[tuple[str | None, float]]
    misses: int = 0

    def vote(self) -> tuple[str | None, float | None]:
        """The label with the largest summed score over the window, and that sum / window length."""
        totals: dict[str, float] = {}
        for label, score in self.votes:
            if label is not None:
                totals[label] = totals.get(label, 0.0) + score
        if not totals:
            return None, None
        label = max(totals, key=lambda k: totals[k])
        return label, totals[label] / len(self.votes)


@dataclass
class IoUTracker:
    """Frame-by-frame IoU tracker of one source.

    Args:
        iou_threshold: minimum IoU between a detection and a track's last box to match.
        max_age: frames a track survives unseen.
        vote_window: frames in the gesture vote (1 disables smoothing).
        method: ``"hungarian"`` (optimal assignment) or ``"greedy"`` (highest IoU first).
    """

    iou_threshold: float = 0.3
    max_age: int = 10
    vote_window: int = 5
    method: Literal["hungarian", "greedy"] = "hungarian"
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0

    def update(self, hands: Sequence[HandPrediction]) -> list[HandPrediction]:
        """Assign track ids to one frame's hands and replace each gesture by its track's vote.

        A hand without a gesture (crop too small) keeps ``gesture=None`` and adds no vote.
        Returns the hands in input order.
        """
        boxes = np.array([h.bbox for h in hands], dtype=np.float64).reshape(-1, 4)
        last = np.array([t.bbox for t in self.tracks], dtype=np.float64).reshape(-1, 4)
        pairs = match(box_iou(boxes, last), self.iou_threshold, self.method)
        owner = {d: self.tracks[t] for d, t in pairs}
        for track in self.tracks:
            track.misses += 1
        out = []
        for i, hand in enumerate(hands):
            track = owner.get(i)
            if track is None:
                track = Track(self.next_id, hand.bbox, deque(maxlen=self.vote_window))
                self.next_id += 1
                self.tracks.append(track)
            track.bbox, track.misses = hand.bbox, 0
            track.votes.append((hand.gesture, hand.gesture_score or 0.0))
            gesture, gesture_score = track.vote() if hand.gesture is not None else (None, None)
            out.append(replace(hand, track_id=track.track_id, gesture=gesture, gesture_score=gesture_score))
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        return out
