"""The runtime hand detector: RGB frames in, boxes in pixels of each frame out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gesturekit.models.postprocess import nms, postprocess
from gesturekit.runtime.backend import Backend, backend_metadata
from gesturekit.runtime.preprocess import preprocess_frame

if TYPE_CHECKING:
    from gesturekit.runtime.verifier import HandVerifier


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected hand; ``bbox`` is ``(x1, y1, x2, y2)`` in pixels of the original frame."""

    bbox: tuple[float, float, float, float]
    score: float
    label: str


class HandDetector:
    """Detects hands with any backend: letterbox, infer, ``postprocess``, map back to the frame.

    Frames whose letterboxed inputs have the same shape run as one batch. With a ``verifier`` the
    dense stage keeps the candidates scoring its ``candidate_threshold`` or more, the verifier
    rescores them, and ``score_threshold`` applies to the new scores.

    Args:
        backend: a detection backend (``runtime/backend.py``).
        score_threshold: overrides ``metadata["postprocessing"]["score_threshold"]``.
        verifier: an optional second stage (``runtime/verifier.py``).
    """

    def __init__(self, backend: Backend, score_threshold: float | None = None,
                 verifier: HandVerifier | None = None) -> None:
        self.backend = backend
        self.metadata = backend_metadata(backend, "detection")
        self.classes: list[str] = list(self.metadata["classes"])
        self.input_size = int(self.metadata["input_size"])
        self.postprocessing = dict(self.metadata["postprocessing"])
        if score_threshold is not None:
            self.postprocessing["score_threshold"] = float(score_threshold)
        self.verifier = verifier
        self.score_threshold: float | None = self.postprocessing.get("score_threshold")
        if verifier is not None:
            self.postprocessing["score_threshold"] = verifier.candidate_threshold

    def __call__(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Args: frames uint8 RGB [H,W,3] (sizes may differ). Returns per frame its detections, best first."""
        inputs = [preprocess_frame(frame, self.input_size) for frame in frames]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (image, _) in enumerate(inputs):
            groups.setdefault(image.shape, []).append(i)
        results: list[list[Detection]] = [[] for _ in frames]
        for indices in groups.values():
            boxes, scores = self.backend.infer(np.stack([inputs[i][0] for i in indices]))
            decoded = postprocess(boxes, scores, **self.postprocessing)
            for i, found in zip(indices, decoded):
                results[i] = self._to_frame(found, inputs[i][1], frames[i].shape[:2])
        if self.verifier is not None:
            floor = self.score_threshold or 0.0
            results = [self._merge([d for d in self.verifier(frame, found, scale) if d.score >= floor])
                       for frame, found, (_, scale) in zip(frames, results, inputs)]
        return results

    def _merge(self, found: list[Detection]) -> list[Detection]:
        """NMS again, per class with the model's IoU threshold (as ``postprocess``), once a verifier
        has moved boxes; best first."""
        if len(found) < 2:
            return found
        keep = nms(np.array([d.bbox for d in found]), np.array([d.score for d in found]),
                   np.array([self.classes.index(d.label) for d in found]),
                   float(self.postprocessing.get("nms_iou_threshold", 0.5)))
        return [found[i] for i in keep.tolist()]

    def _to_frame(self, found: dict[str, np.ndarray], scale: float, frame_hw: tuple[int, int]) -> list[Detection]:
        """Input-pixel boxes -> frame pixels (divide by ``scale``, clip to the frame)."""
        height, width = frame_hw
        boxes = found["boxes"] / scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return [
            Detection(tuple(float(v) for v in box), float(score), self.classes[int(label)])  # type: ignore[arg-type]
            for box, score, label in zip(boxes, found["scores"].tolist(), found["labels"].tolist())
        ]
