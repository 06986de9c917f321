"""Detector post-processing shared by the PyTorch model and every runtime backend: threshold,
then cluster candidate boxes with NMS or DBSCAN (as TAO's DetectNet_v2 does).

It runs on numpy arrays, so that the ONNX Runtime path needs no torch; the PyTorch model hands
it its outputs and takes the detections back as tensors (``models.detector``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gesturekit.boxes import box_iou
from gesturekit.config.specs import Clustering


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression per class (torchvision's ``batched_nms``): a box is dropped when it
    overlaps a better one of its class by more than ``iou_threshold``.

    Args:
        boxes: [N,4] xyxy; scores: [N]; labels: [N] class indices.

    Returns:
        Indices of the kept boxes, best score first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) < 2:
        return order
    boxes = np.asarray(boxes, np.float64)
    shifted = (boxes + (np.asarray(labels) * (boxes.max() + 1))[:, None])[order]  # classes never overlap
    suppressed = np.zeros(len(order), bool)
    i = 0
    while i < len(order):  # a kept box against the boxes after it: the IoUs of the others are never read
        suppressed[i + 1:] |= box_iou(shifted[i:i + 1], shifted[i + 1:])[0] > iou_threshold
        following = np.flatnonzero(~suppressed[i + 1:])
        i = i + 1 + int(following[0]) if following.size else len(order)
    return order[~suppressed]


def _dbscan_labels(distance: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN on a precomputed [N,N] distance matrix; noise gets -1."""
    n = distance.shape[0]
    neighbours = distance <= eps
    core = neighbours.sum(1) >= min_samples
    labels = np.full(n, -1, dtype=np.int64)
    cluster = 0
    for seed in range(n):
        if labels[seed] >= 0 or not core[seed]:
            continue
        labels[seed] = cluster
        frontier = [seed]
        while frontier:
            point = frontier.pop()
            for other in np.flatnonzero(neighbours[point]).tolist():
                if labels[other] < 0:
                    labels[other] = cluster
                    if core[other]:
                        frontier.append(other)
        cluster += 1
    return labels


def _dbscan_merge(boxes: np.ndarray, scores: np.ndarray, eps: float, min_samples: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    labels = _dbscan_labels(1.0 - box_iou(boxes, boxes), eps, min_samples)
    out_boxes, out_scores = [], []
    for cluster in np.unique(labels):
        if cluster < 0:
            continue
        member = labels == cluster
        weights = scores[member][:, None]
        out_boxes.append((boxes[member] * weights).sum(0) / weights.sum())
        out_scores.append(scores[member].max())
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    return np.stack(out_boxes).astype(np.float32), np.array(out_scores, np.float32)


def postprocess(
    boxes: Any,
    scores: Any,
    score_threshold: float = 0.05,
    clustering: Clustering = "nms",
    nms_iou_threshold: float = 0.5,
    dbscan_eps: float = 0.3,
    dbscan_min_samples: int = 1,
    max_detections: int = 100,
    minimum_box_size: float = 0.0,
    pre_cluster_topk: int = 1000,
) -> list[dict[str, np.ndarray]]:
    """Turn dense predictions into detections.

    Args:
        boxes: [B,N,4] xyxy in input pixels (any array: numpy, a CPU tensor).
        scores: [B,N,C] per-class probabilities.

    Returns:
        One dict per image: ``boxes`` [M,4] float32, ``scores`` [M] float32, ``labels`` [M] int64 (class
        index), best first.
    """
    results = []
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    num_classes = scores.shape[-1]
    for img_boxes, img_scores in zip(boxes, scores):
        flat = img_scores.reshape(-1)
        keep = np.flatnonzero(flat > score_threshold)
        if keep.size > pre_cluster_topk:
            keep = keep[np.argsort(-flat[keep], kind="stable")[:pre_cluster_topk]]
        cand_scores, labels = flat[keep], (keep % num_classes).astype(np.int64)
        cand_boxes = img_boxes[keep // num_classes]
        wh = cand_boxes[:, 2:] - cand_boxes[:, :2]
        big = (wh >= minimum_box_size).all(1)
        cand_boxes, cand_scores, labels = cand_boxes[big], cand_scores[big], labels[big]
        if clustering == "nms":
            kept = nms(cand_boxes, cand_scores, labels, nms_iou_threshold)
            out = {"boxes": cand_boxes[kept], "scores": cand_scores[kept], "labels": labels[kept]}
        else:
            parts = [
                (*_dbscan_merge(cand_boxes[labels == c], cand_scores[labels == c], dbscan_eps, dbscan_min_samples), c)
                for c in range(num_classes)
            ]
            out = {
                "boxes": np.concatenate([b for b, _, _ in parts]),
                "scores": np.concatenate([s for _, s, _ in parts]),
                "labels": np.concatenate([np.full(len(s), c, dtype=np.int64) for _, s, c in parts]),
            }
            order = np.argsort(-out["scores"], kind="stable")
            out = {k: v[order] for k, v in out.items()}
        results.append({k: v[:max_detections] for k, v in out.items()})
    return results
