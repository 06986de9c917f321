"""The hand detector's optional second stage: rescore candidate boxes from crops at the frame's resolution."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import numpy as np

from gesturekit.config.app import RefineBoxes
from gesturekit.errors import GesturekitError
from gesturekit.runtime.classifier import GestureClassifier
from gesturekit.runtime.detector import Detection

HAND = "hand"
"""The verifier class whose probability rescores a candidate."""


class HandVerifier:
    """Rescores a detector's candidates with a hand-vs-background classifier.

    The detector sees a whole frame at its input size, where a small hand is a few dozen pixels;
    the verifier sees each candidate's crop (its crop convention, e.g. 2.0x square) cut from the
    frame itself, at the frame's resolution. A candidate's score becomes ``detector_score ** (1 -
    weight) * p_hand ** weight``: background falls away, and a hand (``p_hand`` near 1) scores a
    little higher than the detector alone gave it.

    Args:
        classifier: a classifier with a ``hand`` class (``gesturekit data mine`` makes its data).
        candidate_threshold: detections scoring below this are dropped without a crop; the
            detector runs at this threshold.
        trust_threshold: detections scoring this or more keep their score without a crop (on a
            video of one hand that is nearly every hand, so the verifier costs little there).
        weight: the verifier's share of the new score, in [0, 1].
        refine_boxes: with a box head (``model.box_class``), the candidates moved to the box it
            regresses: ``doubtful`` (the rescored ones), ``small`` (every candidate, rescored or
            trusted, whose crop shows it at a higher resolution than the detector's input did: small
            hands, where the head sees more than the detector; a trusted one costs a crop and keeps
            its score), ``all`` (every candidate: boxes fit better, at a crop each) or ``none``
            (every box as the detector drew it, for labels that box hands more loosely than the
            head learned).
    """

    def __init__(self, classifier: GestureClassifier, candidate_threshold: float = 0.1,
                 trust_threshold: float = 0.6, weight: float = 0.3, refine_boxes: RefineBoxes = "doubtful") -> None:
        if HAND not in classifier.classes:
            raise GesturekitError(f"verifier: classes {classifier.classes} have no {HAND!r} class")
        if not 0 <= weight <= 1:
            raise GesturekitError(f"verifier weight: must be in [0, 1], got {weight}")
        if refine_boxes not in get_args(RefineBoxes):
            raise GesturekitError(f"verifier refine_boxes: must be one of {get_args(RefineBoxes)}, got {refine_boxes!r}")
        self.classifier = classifier
        self.hand_index = classifier.classes.index(HAND)
        self.candidate_threshold = candidate_threshold
        self.trust_threshold = trust_threshold
        self.weight = weight
        self.refine_boxes = refine_boxes

    def __call__(self, frame: np.ndarray, candidates: list[Detection], input_scale: float | None = None
                 ) -> list[Detection]:
        """Args: frame uint8 RGB [H,W,3]; candidates in its pixels; input_scale: the detector's, from
        the frame to its input (``refine_boxes="small"`` needs it). Returns them rescored, best first.

        A verifier with a box head (``model.box_class``) also moves the boxes ``refine_boxes`` names
        to the ones it regresses from their crops; the caller then merges the boxes that came to overlap.
        """
        if self.refine_boxes == "small" and input_scale is None:
            raise GesturekitError("verifier refine_boxes 'small': the detector's input_scale is needed")
        height_width = frame.shape[:2]
        doubtful = [d for d in candidates if self.candidate_threshold <= d.score < self.trust_threshold]
        crops = [(d, self.classifier.region(height_width, d.bbox)) for d in doubtful]
        uncropped = []
        for d in (d for d in candidates if d.score >= self.trust_threshold):  # cropped only when its box moves
            region = self.classifier.region(height_width, d.bbox)
            if self._moves(region, input_scale, trusted=True):
                crops.append((d, region))
            else:
                uncropped.append(d)
        cropped = []
        if crops:
            outputs = self.classifier.outputs([frame[y1:y2, x1:x2] for _, (x1, y1, x2, y2) in crops])
            boxes = outputs[1] if len(outputs) > 1 else [None] * len(crops)  # a box head, or none
            w = self.weight
            for i, ((d, region), p_hand, box) in enumerate(zip(crops, outputs[0][:, self.hand_index], boxes)):
                rescored = i < len(doubtful)  # trusted ones keep their score
                if rescored:
                    d = replace(d, score=d.score ** (1 - w) * float(p_hand) ** w)
                if box is not None and self._moves(region, input_scale, trusted=not rescored):
                    d = replace(d, bbox=_in_frame(region, box, height_width))
                cropped.append(d)
        return sorted(uncropped + cropped, key=lambda d: -d.score)

    def _moves(self, region: tuple[int, int, int, int], input_scale: float | None, trusted: bool) -> bool:
        """Whether ``refine_boxes`` moves a candidate whose crop is ``region`` to the box the head regresses."""
        if self.refine_boxes == "small":
            return self._sharper(region, input_scale)  # type: ignore[arg-type]
        return self.refine_boxes == "all" or (self.refine_boxes == "doubtful" and not trusted)

    def _sharper(self, region: tuple[int, int, int, int], input_scale: float) -> bool:
        """Whether the crop of ``region`` shows it at a higher resolution than the detector's input."""
        x1, y1, x2, y2 = region
        return self.classifier.input_size / max(x2 - x1, y2 - y1, 1) > input_scale


def _in_frame(region: tuple[int, int, int, int], box: np.ndarray, frame_hw: tuple[int, int]
              ) -> tuple[float, float, float, float]:
    """A box regressed as fractions of the crop ``region`` -> frame pixels, corners in order and
    clipped to the frame."""
    x1, y1, x2, y2 = region
    height, width = frame_hw
    xs = np.clip(x1 + np.sort(np.asarray(box[0::2], np.float64)) * (x2 - x1), 0.0, width)
    ys = np.clip(y1 + np.sort(np.asarray(box[1::2], np.float64)) * (y2 - y1), 0.0, height)
    return float(xs[0]), float(ys[0]), float(xs[1]), float(ys[1])
