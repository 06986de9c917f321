"""Mine hand detectors' false positives on annotated frames: the training data of a hand verifier."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rich.progress import track
from torchvision.ops import nms

from gesturekit.boxes import box_iou
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.images import read_rgb
from gesturekit.runtime.detector import Detection, HandDetector

BACKGROUND = "background"
"""The label of a mined false positive."""


def mine_hard_negatives(
    detectors: Sequence[HandDetector],
    annotations: Sequence[ImageAnnotation],
    iou_below: float = 0.3,
    max_per_image: int = 8,
    duplicate_iou: float = 0.7,
    batch_size: int = 8,
) -> tuple[list[ImageAnnotation], int]:
    """Each image with its own boxes plus the detectors' false positives labelled ``BACKGROUND``.

    A false positive is a detection whose IoU with every annotated box is below ``iou_below`` (and
    at least a pixel wide and high, as a KITTI label must be).
    The detectors' false positives of an image are pooled, best score first, near-duplicates
    (IoU > ``duplicate_iou`` with a better one: NMS) dropped, and at most ``max_per_image`` kept. Set the
    detectors' ``score_threshold`` to the lowest score a verifier will be asked about.

    Returns:
        The annotations with the mined boxes added, and how many were mined.
    """
    out, mined = [], 0
    for start in track(range(0, len(annotations), batch_size), description="mining", transient=True):
        batch = annotations[start:start + batch_size]
        frames = [read_rgb(ann.image) for ann in batch]  # read once, for every detector
        found = [detector(frames) for detector in detectors]
        for k, ann in enumerate(batch):
            annotated, count = _with_negatives(ann, [d for per_detector in found for d in per_detector[k]],
                                               iou_below, max_per_image, duplicate_iou)
            out.append(annotated)
            mined += count
    return out, mined


def _with_negatives(ann: ImageAnnotation, detections: list[Detection], iou_below: float, max_per_image: int,
                    duplicate_iou: float) -> tuple[ImageAnnotation, int]:
    """``ann`` plus its false positives among ``detections`` (as ``mine_hard_negatives``), and their count."""
    truth = np.array([[b.x1, b.y1, b.x2, b.y2] for b in ann.boxes], np.float32).reshape(-1, 4)
    boxes = np.array([d.bbox for d in detections], np.float32).reshape(-1, 4)
    scores = np.array([d.score for d in detections], np.float32)
    usable = (box_iou(boxes, truth).max(1, initial=0.0) < iou_below) & (boxes[:, 2:] - boxes[:, :2] >= 1).all(1)
    order = nms(torch.from_numpy(boxes[usable]), torch.from_numpy(scores[usable]), duplicate_iou)  # best first
    kept = boxes[usable][order[:max_per_image].numpy()]
    extra = [Box(BACKGROUND, *(float(v) for v in box)) for box in kept]
    return ImageAnnotation(ann.image, ann.width, ann.height, [*ann.boxes, *extra], ann.group), len(kept)
