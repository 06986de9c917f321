"""Detector post-processing shared by the PyTorch model and every runtime backend: threshold,
then cluster candidate boxes with NMS or DBSCAN (as TAO's DetectNet_v2 does)."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, box_iou

from gesturekit.config.specs import Clustering


def _dbscan_labels(distance: torch.Tensor, eps: float, min_samples: int) -> torch.Tensor:
    """DBSCAN on a precomputed [N,N] distance matrix; noise gets -1."""
    n = distance.shape[0]
    neighbours = distance <= eps
    core = neighbours.sum(1) >= min_samples
    labels = torch.full((n,), -1, dtype=torch.long)
    cluster = 0
    for seed in range(n):
        if labels[seed] >= 0 or not core[seed]:
            continue
        labels[seed] = cluster
        frontier = [seed]
        while frontier:
            point = frontier.pop()
            for other in torch.nonzero(neighbours[point]).flatten().tolist():
                if labels[other] < 0:
                    labels[other] = cluster
                    if core[other]:
                        frontier.append(other)
        cluster += 1
    return labels


def _dbscan_merge(boxes: torch.Tensor, scores: torch.Tensor, eps: float, min_samples: int):
    labels = _dbscan_labels(1.0 - box_iou(boxes, boxes), eps, min_samples)
    out_boxes, out_scores = [], []
    for cluster in labels.unique():
        if cluster < 0:
            continue
        member = labels == cluster
        weights = scores[member][:, None]
        out_boxes.append((boxes[member] * weights).sum(0) / weights.sum())
        out_scores.append(scores[member].max())
    if not out_boxes:
        return boxes.new_zeros((0, 4)), scores.new_zeros((0,))
    return torch.stack(out_boxes), torch.stack(out_scores)


def postprocess(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    score_threshold: float = 0.05,
    clustering: Clustering = "nms",
    nms_iou_threshold: float = 0.5,
    dbscan_eps: float = 0.3,
    dbscan_min_samples: int = 1,
    max_detections: int = 100,
    minimum_box_size: float = 0.0,
    pre_cluster_topk: int = 1000,
) -> list[dict[str, torch.Tensor]]:
    """Turn dense predictions into detections.

    Args:
        boxes: [B,N,4] xyxy in input pixels.
        scores: [B,N,C] per-class probabilities.

    Returns:
        One dict per image: ``boxes`` [M,4], ``scores`` [M], ``labels`` [M] (class index).
    """
    results = []
    num_classes = scores.shape[-1]
    for img_boxes, img_scores in zip(boxes.float(), scores.float()):
        flat = img_scores.flatten()
        keep = torch.nonzero(flat > score_threshold).flatten()
        if keep.numel() > pre_cluster_topk:
            keep = keep[flat[keep].topk(pre_cluster_topk).indices]
        cand_scores, labels = flat[keep], keep % num_classes
        cand_boxes = img_boxes[keep // num_classes]
        wh = cand_boxes[:, 2:] - cand_boxes[:, :2]
        big = (wh >= minimum_box_size).all(1)
        cand_boxes, cand_scores, labels = cand_boxes[big], cand_scores[big], labels[big]
        if clustering == "nms":
            kept = batched_nms(cand_boxes, cand_scores, labels, nms_iou_threshold)
            out = {"boxes": cand_boxes[kept], "scores": cand_scores[kept], "labels": labels[kept]}
        else:
            parts = [
                (*_dbscan_merge(cand_boxes[labels == c], cand_scores[labels == c], dbscan_eps, dbscan_min_samples), c)
                for c in range(num_classes)
            ]
            out = {
                "boxes": torch.cat([b for b, _, _ in parts]),
                "scores": torch.cat([s for _, s, _ in parts]),
                "labels": torch.cat([torch.full((len(s),), c, dtype=torch.long) for _, s, c in parts]),
            }
            order = out["scores"].argsort(descending=True)
            out = {k: v[order] for k, v in out.items()}
        results.append({k: v[:max_detections] for k, v in out.items()})
    return results
