"""Mine hand detectors' false positives on annotated frames: the training data of a hand verifier."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gesturekit.boxes import box_iou
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.evaluation.detection import detect_annotations
from gesturekit.runtime.detector import HandDetector

BACKGROUND = "background"
"""The label of a mined false positive."""


def _keep_distinct(boxes: np.ndarray, iou_limit: float) -> list[int]:
    """Indices of ``boxes`` (best first) that overlap no earlier kept box by IoU >= ``iou_limit``."""
    kept: list[int] = []
    iou = box_iou(boxes, boxes)
    for i in range(len(boxes)):
        if all(iou[i, j] < iou_limit for j in kept):
            kept.append(i)
    return kept


def mine_hard_negatives(
    detectors: Sequence[HandDetector],
    annotations: Sequence[ImageAnnotation],
    iou_below: float = 0.3,
    max_per_image: int = 8,
    duplicate_iou: float = 0.7,
) -> tuple[list[ImageAnnotation], int]:
    """Each image with its own boxes plus the detectors' false positives labelled ``BACKGROUND``.

    A false positive is a detection whose IoU with every annotated box is below ``iou_below`` (and
    at least a pixel wide and high, as a KITTI label must be).
    The detectors' false positives of an image are pooled, best score first, near-duplicates
    (IoU >= ``duplicate_iou`` with a kept one) dropped, and at most ``max_per_image`` kept. Set the
    detectors' ``score_threshold`` to the lowest score a verifier will be asked about.

    Returns:
        The annotations with the mined boxes added, and how many were mined.
    """
    found = [detect_annotations(d, annotations, d.classes, {}, description=f"mining ({i + 1}/{len(detectors)})")[0]
             for i, d in enumerate(detectors)]
    out, mined = [], 0
    for k, ann in enumerate(annotations):
        truth = np.array([[b.x1, b.y1, b.x2, b.y2] for b in ann.boxes], np.float32).reshape(-1, 4)
        boxes = np.concatenate([f[k]["boxes"] for f in found])
        scores = np.concatenate([f[k]["scores"] for f in found])
        usable = (box_iou(boxes, truth).max(1, initial=0.0) < iou_below) & (boxes[:, 2:] - boxes[:, :2] >= 1).all(1)
        negatives = boxes[usable][np.argsort(-scores[usable], kind="stable")]
        kept = negatives[_keep_distinct(negatives, duplicate_iou)[:max_per_image]]
        mined += len(kept)
        extra = [Box(BACKGROUND, *(float(v) for v in box)) for box in kept]
        out.append(ImageAnnotation(ann.image, ann.width, ann.height, [*ann.boxes, *extra], ann.group))
    return out, mined
