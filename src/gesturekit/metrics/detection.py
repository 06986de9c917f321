"""Detection metrics: VOC AP, COCO AP (through faster-coco-eval) and KITTI-style AP with ignore rules.

Inputs are one dict per image, predictions and ground truth in the same order:

- ground truth ``{"boxes": [N, 4] xyxy pixels, "labels": [N] int}``
- predictions ``{"boxes": [M, 4] xyxy pixels, "scores": [M], "labels": [M] int}``

Labels index ``classes``. IoU is computed on continuous pixel coordinates (no VOC "+1"), as COCO does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from gesturekit.boxes import box_iou
from gesturekit.errors import GesturekitError
from gesturekit.metrics.bootstrap import paired_bootstrap

CURVE_POINTS = 101
"""Recall points (0, 0.01, ..., 1) at which the plotted precision/recall curves are sampled."""

_KITTI_RECALLS = np.arange(1, 41) / 40.0  # KITTI's current 40-point protocol (recall 0 excluded)
_TP, _FP, _IGNORED = 1, 0, -1


@dataclass(frozen=True, slots=True)
class _Image:
    gt_boxes: np.ndarray  # [N, 4] float64
    gt_labels: np.ndarray  # [N] int64
    boxes: np.ndarray  # [M, 4] float64
    scores: np.ndarray  # [M] float64
    labels: np.ndarray  # [M] int64


@dataclass(frozen=True, slots=True)
class _Matches:
    """The matching of one class over all images."""

    scores: np.ndarray  # [D] scores of the detections that are not ignored
    is_tp: np.ndarray  # [D] bool, aligned with scores
    num_gts: int  # ground truths that are not ignored


def voc_ap(recall: Sequence[float] | np.ndarray, precision: Sequence[float] | np.ndarray) -> float:
    """Area under the precision envelope, VOC2010+ all-point interpolation.

    Args:
        recall: [D] non-decreasing recall after each detection, ranked by descending score.
        precision: [D] precision after each detection.

    Returns:
        The AP in ``[0, 1]``; 0 when there are no detections.
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _array(d: Mapping[str, Any], key: str, where: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if key not in d:
        raise GesturekitError(f"{where}: missing key {key!r}")
    value = np.asarray(d[key], dtype=dtype)
    if value.size == 0:
        return value.reshape((0, *shape[1:]))
    if value.ndim != len(shape) or any(s != -1 and s != v for s, v in zip(shape, value.shape)):
        want = "[" + ", ".join("N" if s == -1 else str(s) for s in shape) + "]"
        raise GesturekitError(f"{where}.{key}: expected shape {want}, got {list(value.shape)}")
    return value


def _labels(d: Mapping[str, Any], where: str, num_classes: int, count: int) -> np.ndarray:
    labels = _array(d, "labels", where, (-1,), np.float64)
    if len(labels) != count:
        raise GesturekitError(f"{where}.labels: {len(labels)} labels for {count} boxes")
    bad = labels[(labels != np.round(labels)) | (labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise GesturekitError(f"{where}.labels: label {bad[0]:g} is not a class index in 0..{num_classes - 1}")
    return labels.astype(np.int64)


def _prepare(
    preds: Sequence[Mapping[str, Any]], gts: Sequence[Mapping[str, Any]], num_classes: int
) -> list[_Image]:
    if len(preds) != len(gts):
        raise GesturekitError(f"preds: {len(preds)} images of predictions for {len(gts)} images of ground truth")
    images = []
    for i, (p, g) in enumerate(zip(preds, gts)):
        gt_boxes = _array(g, "boxes", f"gts[{i}]", (-1, 4), np.float64)
        boxes = _array(p, "boxes", f"preds[{i}]", (-1, 4), np.float64)
        scores = _array(p, "scores", f"preds[{i}]", (-1,), np.float64)
        if len(scores) != len(boxes):
            raise GesturekitError(f"preds[{i}].scores: {len(scores)} scores for {len(boxes)} boxes")
        images.append(
            _Image(
                gt_boxes=gt_boxes,
                gt_labels=_labels(g, f"gts[{i}]", num_classes, len(gt_boxes)),
                boxes=boxes,
                scores=scores,
                labels=_labels(p, f"preds[{i}]", num_classes, len(boxes)),
            )
        )
    return images


def _too_small(boxes: np.ndarray, min_width: float, min_height: float) -> np.ndarray:
    return ((boxes[:, 2] - boxes[:, 0]) < min_width) | ((boxes[:, 3] - boxes[:, 1]) < min_height)


def _match_image(
    boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignored: np.ndarray,
    det_small: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """VOC matching of one image and class; detections must be sorted by descending score.

    Each detection takes its highest-IoU ground truth. At ``IoU >= iou_threshold`` it is a TP if that
    ground truth is unmatched, ignored if the ground truth is ignored, else a duplicate (FP). Below
    the threshold it is an FP. A detection in ``det_small`` is ignored wherever it would be an FP.

    Returns:
        [M] int8 status, ``1`` TP, ``0`` FP, ``-1`` ignored.
    """
    status = np.full(len(boxes), _FP, dtype=np.int8)
    if len(gt_boxes):
        ious = box_iou(boxes, gt_boxes)
        matched = np.zeros(len(gt_boxes), dtype=bool)
        for d in range(len(boxes)):
            g = int(np.argmax(ious[d]))
            if ious[d, g] < iou_threshold:
                continue
            if gt_ignored[g]:
                status[d] = _IGNORED
            elif not matched[g]:
                status[d] = _TP
                matched[g] = True
    status[(status == _FP) & det_small] = _IGNORED
    return status


def _image_matches(im: _Image, label: int, iou_threshold: float, min_width: float = 0.0,
                   min_height: float = 0.0) -> _Matches:
    """Match one class in one image (detections unsorted across images); boxes smaller than the minimum size
    follow the ignore rules."""
    gt_boxes = im.gt_boxes[im.gt_labels == label]
    gt_ignored = _too_small(gt_boxes, min_width, min_height)
    keep = np.flatnonzero(im.labels == label)
    keep = keep[np.argsort(-im.scores[keep], kind="stable")]
    boxes = im.boxes[keep]
    status = _match_image(boxes, gt_boxes, gt_ignored, _too_small(boxes, min_width, min_height), iou_threshold)
    return _Matches(scores=im.scores[keep][status != _IGNORED], is_tp=status[status != _IGNORED] == _TP,
                    num_gts=int((~gt_ignored).sum()))


def _match_class(
    images: Sequence[_Image], label: int, iou_threshold: float, min_width: float = 0.0, min_height: float = 0.0
) -> _Matches:
    """Match one class over all images; boxes smaller than the minimum size follow the ignore rules."""
    return _pooled([_image_matches(im, label, iou_threshold, min_width, min_height) for im in images])


def _pr(m: _Matches) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each ranked detection, both [D]."""
    tp = np.cumsum(m.is_tp)
    fp = np.cumsum(~m.is_tp)
    recall = tp / max(m.num_gts, 1)
    precision = tp / np.maximum(tp + fp, 1)
    return recall, precision


def _sampled_precision(recall: np.ndarray, precision: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Interpolated precision (best precision at recall >= r) at each recall point r; 0 past the last."""
    if len(recall) == 0:
        return np.zeros(len(points))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, points, side="left")
    return np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)


def _best_f1(m: _Matches) -> dict[str, float | None]:
    """The score threshold (keep ``score >= threshold``) that maximises F1, with its precision and recall."""
    recall, precision = _pr(m)
    if m.num_gts == 0 or not m.is_tp.any():
        return {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    ends = np.flatnonzero(np.append(m.scores[1:] != m.scores[:-1], True))  # last detection of each tied score
    r, p = recall[ends], precision[ends]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    i = int(np.argmax(f1))
    return {
        "threshold": float(m.scores[ends[i]]),
        "precision": float(p[i]),
        "recall": float(r[i]),
        "f1": float(f1[i]),
    }


def _pooled(matches: Sequence[_Matches]) -> _Matches:
    """The matches of several images or classes as one ranking."""
    scores = np.concatenate([m.scores for m in matches]) if matches else np.zeros(0)
    is_tp = np.concatenate([m.is_tp for m in matches]) if matches else np.zeros(0, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    return _Matches(scores=scores[order], is_tp=is_tp[order], num_gts=sum(m.num_gts for m in matches))


def _class_mean_ap50(per_image: Sequence[Sequence[_Matches]], picks: np.ndarray) -> float:
    """AP@0.5 averaged over the classes with ground truth, of the images ``picks`` (repeats count again)."""
    aps = []
    for matches in per_image:
        pooled = _pooled([matches[i] for i in picks])
        if pooled.num_gts:
            aps.append(voc_ap(*_pr(pooled)))
    return _mean(aps)


def paired_bootstrap_ap50(
    preds_a: Sequence[Mapping[str, Any]],
    preds_b: Sequence[Mapping[str, Any]],
    gts: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Two detectors' AP@0.5 (class mean) on the same images, against the noise of the image sample: a paired
    bootstrap over images (``metrics.bootstrap``; ``a``, ``b``, ``difference``, ``interval``, ``within_noise``)."""
    images_a, images_b = _prepare(preds_a, gts, len(classes)), _prepare(preds_b, gts, len(classes))
    matches_a = [[_image_matches(im, k, iou_threshold) for im in images_a] for k in range(len(classes))]
    matches_b = [[_image_matches(im, k, iou_threshold) for im in images_b] for k in range(len(classes))]
    return paired_bootstrap(len(gts), lambda picks: _class_mean_ap50(matches_a, picks),
                            lambda picks: _class_mean_ap50(matches_b, picks), resamples, seed)


def _coco_ap(
    images: Sequence[_Image], classes: Sequence[str]
) -> tuple[list[float | None], list[float | None]]:
    """Per-class COCO AP@[0.5:0.95] and AP@0.5 (101-point, area "all", 100 detections per image and class).

    Returns:
        ``(ap50_95, ap50)``, one entry per class, ``None`` for a class without ground truth.
    """
    quiet = lambda *args, **kwargs: None  # noqa: E731
    gt: dict[str, Any] = {
        "images": [{"id": i + 1} for i in range(len(images))],
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(classes)],
        "annotations": [],
    }
    dets = []
    for i, im in enumerate(images):
        for box, label in zip(im.gt_boxes.tolist(), im.gt_labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(im.boxes.tolist(), im.scores.tolist(), im.labels.tolist()):
            dets.append(
                {
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": score,
                }
            )
    coco_gt = COCO(gt, print_function=quiet)
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(dets), "bbox", print_function=quiet)
    evaluator.evaluate()
    evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [IoU thresholds, 101 recalls, classes]

    def mean(p: np.ndarray) -> float | None:
        p = p[p > -1]
        return float(p.mean()) if p.size else None

    return (
        [mean(precision[:, :, k]) for k in range(len(classes))],
        [mean(precision[0, :, k]) for k in range(len(classes))],
    )


def _mean(values: Sequence[float | None]) -> float:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else 0.0


def evaluate_detection(
    preds: Sequence[Mapping[str, Any]],
    gts: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    iou_threshold: float = 0.5,
    kitti_iou_threshold: float = 0.7,
    min_width: float = 0.0,
    min_height: float = 0.0,
) -> dict[str, Any]:
    """Evaluate detections against ground truth with VOC, COCO and KITTI-style AP.

    - ``ap50``: VOC2010+ all-point AP at ``iou_threshold`` with greedy matching by descending score
      (each ground truth matched once; duplicates are FP).
    - ``ap50_95`` / ``coco_ap50``: COCO AP (101-point interpolation) through faster-coco-eval.
    - ``kitti_ap``: 40-point interpolated AP at ``kitti_iou_threshold``. Ground truth narrower than
      ``min_width`` or lower than ``min_height`` is ignored (neither TP nor FN, and detections
      matched to it are not FP); detections under the minimum size are never FP (ignored unless they
      match a ground truth that counts, which makes them a TP, as COCO's area-range rule does).
    - ``best_f1``: the score threshold maximising F1 at ``iou_threshold``, with its precision and
      recall; per class and pooled over all classes.

    Per-class APs are ``None`` for a class without (non-ignored) ground truth; the means are over the
    classes where they are defined, 0.0 if none is.

    Args:
        preds: one dict per image: ``boxes`` [M, 4] xyxy pixels, ``scores`` [M], ``labels`` [M].
        gts: one dict per image, same order: ``boxes`` [N, 4] xyxy pixels, ``labels`` [N].
        classes: class names, indexed by the labels.

    Returns:
        A JSON-serialisable dict: ``num_images``, the thresholds, ``ap50``, ``ap50_95``, ``coco_ap50``,
        ``kitti_ap``, ``best_f1``, ``per_class`` (name -> ``num_gts``, ``num_detections``,
        ``kitti_num_gts``, the APs and ``best_f1``) and ``curves`` (name -> ``recall`` and the
        interpolated ``precision`` at :data:`CURVE_POINTS` recalls, with the class ``ap``) for classes
        with ground truth.
    """
    if not classes:
        raise GesturekitError("classes: at least one class name is required")
    images = _prepare(preds, gts, len(classes))
    voc = [_match_class(images, k, iou_threshold) for k in range(len(classes))]
    kitti = [_match_class(images, k, kitti_iou_threshold, min_width, min_height) for k in range(len(classes))]
    if images:
        ap50_95, coco_ap50 = _coco_ap(images, classes)
    else:
        ap50_95 = coco_ap50 = [None] * len(classes)

    points = np.linspace(0.0, 1.0, CURVE_POINTS)
    per_class: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(classes):
        recall, precision = _pr(voc[k])
        ap50 = voc_ap(recall, precision) if voc[k].num_gts else None
        kitti_ap = (
            float(_sampled_precision(*_pr(kitti[k]), _KITTI_RECALLS).mean()) if kitti[k].num_gts else None
        )
        per_class[name] = {
            "num_gts": voc[k].num_gts,
            "num_detections": int(sum((im.labels == k).sum() for im in images)),
            "kitti_num_gts": kitti[k].num_gts,
            "ap50": ap50,
            "ap50_95": ap50_95[k],
            "coco_ap50": coco_ap50[k],
            "kitti_ap": kitti_ap,
            "best_f1": _best_f1(voc[k]),
        }
        if ap50 is not None:
            curves[name] = {
                "recall": points.tolist(),
                "precision": _sampled_precision(recall, precision, points).tolist(),
                "ap": ap50,
            }
    return {
        "num_images": len(images),
        "iou_threshold": float(iou_threshold),
        "kitti_iou_threshold": float(kitti_iou_threshold),
        "min_width": float(min_width),
        "min_height": float(min_height),
        "ap50": _mean([c["ap50"] for c in per_class.values()]),
        "ap50_95": _mean(ap50_95),
        "coco_ap50": _mean(coco_ap50),
        "kitti_ap": _mean([c["kitti_ap"] for c in per_class.values()]),
        "best_f1": _best_f1(_pooled(voc)),
        "per_class": per_class,
        "curves": curves,
    }
