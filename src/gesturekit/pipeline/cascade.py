"""The detector -> classifier cascade (DeepStream's primary and secondary GIE).

For a batch of frames: detect hands, widen every box into the classifier's region of interest
with the crop convention (``data.crops.widen_box``, clipped to the frame), classify every crop
whose shorter side is at least ``min_crop_size`` in one batch, and report the detector's
original box with the gesture (``None`` for crops that were too small). A hand the detector
doubts (from ``confirm_threshold`` up to ``score_threshold``) is kept only when the classifier
names a gesture other than the catch-all class with ``confirm_probability`` or more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from gesturekit.config.specs import CropConvention
from gesturekit.data.crops import widen_box
from gesturekit.pipeline.predictions import HandPrediction


class DetectionLike(Protocol):
    bbox: tuple[float, float, float, float]
    score: float


class Detector(Protocol):
    def __call__(self, frames: list[np.ndarray]) -> list[list[DetectionLike]]: ...


class Classifier(Protocol):
    classes: Sequence[str]
    crop: Any

    def __call__(self, crops: list[np.ndarray]) -> list[tuple[str, float]]: ...


def crop_convention(crop: Any, margin_px: float | None = None) -> CropConvention:
    """The classifier's crop convention (a mapping or an object with the same fields), with
    ``margin_px`` overridden when given."""
    if crop is None:
        base = CropConvention()
    elif isinstance(crop, CropConvention):
        base = crop
    else:
        get = crop.get if isinstance(crop, Mapping) else lambda key: getattr(crop, key)
        base = CropConvention(margin_px=get("margin_px"), enlarge_ratio=get("enlarge_ratio"), square=get("square"))
    return base if margin_px is None else base.model_copy(update={"margin_px": float(margin_px)})


def crop_box(
    bbox: Sequence[float], frame_size: tuple[int, int], crop: CropConvention
) -> tuple[int, int, int, int]:
    """The clipped classifier region ``(x1, y1, x2, y2)`` of a detector box; the crop is
    ``frame[y1:y2, x1:x2]`` as in training (``data.transforms.crop_roi``)."""
    x1, y1, x2, y2 = bbox
    return widen_box((x1, y1, x2, y2), frame_size, crop.margin_px, crop.enlarge_ratio, crop.square)


class Cascade:
    """Detector, then classifier on widened crops; one classifier call per batch of frames.

    The two stages are also callable apart (:meth:`detect`, :meth:`classify`) so that the app
    runs them in two threads, the detector on the next batch while the classifier finishes this one.

    Args:
        detector: ``frames -> per-frame detections`` (each with ``bbox`` and ``score``).
        classifier: ``crops -> [(label, probability)]`` with a ``crop`` convention, or ``None``
            for detection only.
        score_threshold: detections below it are dropped, unless confirmed.
        margin_px: overrides the classifier's crop margin.
        min_crop_size: crops whose shorter side is smaller get no gesture.
        confirm_threshold: detections from this score up to ``score_threshold`` are classified
            too, and kept when their gesture is confirmed; ``None``: no confirmation.
        confirm_probability: the gesture probability that confirms a hand.
        catch_all: the class that confirms nothing (GestureNet's ``random``).
    """

    def __init__(
        self,
        detector: Detector,
        classifier: Classifier | None = None,
        *,
        score_threshold: float = 0.0,
        margin_px: float | None = None,
        min_crop_size: int = 16,
        confirm_threshold: float | None = None,
        confirm_probability: float = 0.5,
        catch_all: str = "random",
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.score_threshold = score_threshold
        self.min_crop_size = min_crop_size
        self.crop = crop_convention(getattr(classifier, "crop", None), margin_px)
        self.floor = score_threshold  # the lowest score detect() keeps
        if classifier is not None and confirm_threshold is not None:
            self.floor = min(score_threshold, confirm_threshold)
        self.confirm_probability = confirm_probability
        self.catch_all = catch_all

    def __call__(self, frames: list[np.ndarray]) -> list[list[HandPrediction]]:
        """Run the cascade (:meth:`detect`, then :meth:`classify`).

        Args:
            frames: ``[H, W, 3]`` uint8 RGB images (sizes may differ).

        Returns:
            Per frame, the kept hands in detector order, boxes in pixels of that frame.
        """
        return self.classify(frames, self.detect(frames))

    def detect(self, frames: list[np.ndarray]) -> list[list[DetectionLike]]:
        """The primary stage: per frame, the detections scoring at least ``score_threshold`` (or,
        confirming, ``confirm_threshold``)."""
        if not frames:
            return []
        return [[d for d in dets if float(d.score) >= self.floor] for dets in self.detector(frames)]

    def confirmed(self, hand: HandPrediction) -> bool:
        """Whether a hand is kept: it scores ``score_threshold``, or the classifier confirms it."""
        if hand.score >= self.score_threshold:
            return True
        return (hand.score >= self.floor and hand.gesture is not None and hand.gesture != self.catch_all
                and (hand.gesture_score or 0.0) >= self.confirm_probability)

    def classify(self, frames: list[np.ndarray], detections: list[list[DetectionLike]]) -> list[list[HandPrediction]]:
        """The secondary stage: classify the widened crops of :meth:`detect`'s hands in one batch.

        Args:
            frames: the frames given to :meth:`detect`; detections: its result.

        Returns:
            Per frame, its confirmed hands in detector order, boxes in pixels of that frame.
        """
        crops: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []
        if self.classifier is not None:
            for i, (frame, dets) in enumerate(zip(frames, detections)):
                height, width = frame.shape[:2]
                for j, det in enumerate(dets):
                    x1, y1, x2, y2 = crop_box(det.bbox, (width, height), self.crop)
                    if min(x2 - x1, y2 - y1) >= self.min_crop_size:
                        crops.append(frame[y1:y2, x1:x2])
                        owners.append((i, j))
        gestures: dict[tuple[int, int], tuple[str, float]] = {}
        if self.classifier is not None and crops:
            gestures = dict(zip(owners, self.classifier(crops)))
        out = []
        for i, dets in enumerate(detections):
            row = []
            for j, det in enumerate(dets):
                label, prob = gestures.get((i, j), (None, None))
                row.append(
                    HandPrediction(
                        bbox=tuple(float(v) for v in det.bbox),  # type: ignore[arg-type]
                        score=float(det.score),
                        gesture=label,
                        gesture_score=None if prob is None else float(prob),
                    )
                )
            out.append([hand for hand in row if self.confirmed(hand)])
        return out
