"""The runtime gesture classifier: hand crops in, ``(gesture, probability)`` out."""

from __future__ import annotations

import numpy as np

from gesturekit.data.crops import widen_box
from gesturekit.runtime.backend import Backend, backend_metadata
from gesturekit.runtime.preprocess import preprocess_crop


class GestureClassifier:
    """Classifies hand crops with any backend.

    Args:
        backend: a classification backend (``runtime/backend.py``).
        max_batch: crops per backend call.

    Attributes:
        classes: gesture names in output order.
        crop: the crop convention (``margin_px``, ``enlarge_ratio``, ``square``) of training.
    """

    def __init__(self, backend: Backend, max_batch: int = 64) -> None:
        self.backend = backend
        self.metadata = backend_metadata(backend, "classification")
        self.classes: list[str] = list(self.metadata["classes"])
        self.crop: dict[str, float | bool] = dict(self.metadata["crop"])
        self.input_size = int(self.metadata["input_size"])
        self.max_batch = max_batch

    def region(self, frame_hw: tuple[int, int], bbox: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """The frame region ``(x1, y1, x2, y2)`` of a hand box's crop: ``widen_box`` with this
        model's convention (as ``data.transforms.crop_roi`` in training)."""
        height, width = frame_hw
        return widen_box(tuple(bbox), (width, height), float(self.crop["margin_px"]),
                         float(self.crop["enlarge_ratio"]), bool(self.crop["square"]))

    def crop_region(self, frame: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """The classifier's crop of a hand box, ``frame[y1:y2, x1:x2]`` of its ``region``.

        Args:
            frame: [H,W,3]; bbox: ``(x1, y1, x2, y2)`` in its pixels.
        """
        x1, y1, x2, y2 = self.region(frame.shape[:2], bbox)
        return frame[y1:y2, x1:x2]

    def outputs(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Args: crops uint8 RGB [h,w,3] (any sizes). Returns every model output over all crops:
        probabilities [N,K] float32, then ``boxes`` [N,4] for a model with a box head (no crops:
        the empty probabilities alone, as no model call is made)."""
        batches = [self.backend.infer(np.stack([preprocess_crop(c, self.input_size)
                                                for c in crops[start:start + self.max_batch]]))
                   for start in range(0, len(crops), self.max_batch)]
        if not batches:
            return [np.zeros((0, len(self.classes)), np.float32)]
        return [np.concatenate(parts) for parts in zip(*batches)]

    def probabilities(self, crops: list[np.ndarray]) -> np.ndarray:
        """Args: crops uint8 RGB [h,w,3] (any sizes). Returns probabilities [N,K] float32."""
        return self.outputs(crops)[0]

    def __call__(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Args: crops uint8 RGB [h,w,3]. Returns the most likely gesture and its probability per crop."""
        probs = self.probabilities(crops)
        best = probs.argmax(1)
        return [(self.classes[int(k)], float(probs[i, k])) for i, k in enumerate(best)]
