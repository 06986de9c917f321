"""Which hands the shipped detector misses: recall by where a hand lies and by its size.

For each test set, every ground-truth hand gets the best score of the detections overlapping it at
IoU >= 0.5 (0 if none). Hands are grouped by whether the box touches the frame border (within
``--edge-px``: a hand cut by the frame, such as the camera wearer's own hands at the bottom of an
EgoHands frame) and by box height; per group the script gives the hands, and the recall at the
app's score threshold and at the detector's floor. On HaGRID (a dataset named ``hagrid*``) the hands are
also grouped by their HaGRID label: the gesturing hand, or ``no_gesture`` (a second, idle hand: hanging
at a side, on a lap, cut by the frame's bottom), with AP@0.5 over every hand and with the idle hands
ignored (neither TP nor FP, nor the detections on them). Saves ``benchmarks/results/detector_misses.json``.

    python benchmarks/detector_misses.py [--detector hand-detector] [--verifier hand-verifier]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from common import DATA, REPO, RESULTS

from gesturekit.boxes import box_iou
from gesturekit.data.formats.hagrid import read_hagrid
from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.evaluation.detection import detect_annotations
from gesturekit.io import atomic_write_json
from gesturekit.metrics.detection import evaluate_detection
from gesturekit.runtime.loading import backend_for, load_detector

IDLE_LABEL = "no_gesture"
MATCH_IOU = 0.5
HEIGHT_BINS = ((0, 32), (32, 96), (96, float("inf")))


def best_scores(pred: dict[str, np.ndarray], gt: dict[str, np.ndarray]) -> np.ndarray:
    """Per ground-truth box, the best score of the predictions overlapping it at IoU >= ``MATCH_IOU``."""
    if len(pred["boxes"]) == 0:
        return np.zeros(len(gt["boxes"]))
    iou = box_iou(gt["boxes"].astype(np.float64), pred["boxes"].astype(np.float64))
    return np.where(iou >= MATCH_IOU, pred["scores"][None, :], 0.0).max(1, initial=0.0)


def recall(scores: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {"hands": int(len(scores))}
    for name, threshold in thresholds.items():
        out[f"recall_{name}"] = round(float((scores >= threshold).mean()), 4) if len(scores) else None
    return out


def idle_hands(hagrid_root: Path, split: str) -> dict[str, np.ndarray]:
    """Image id -> the boxes [N,4] of its ``no_gesture`` hands, in the frame's pixels."""
    return {ann.image.stem: np.array([[b.x1, b.y1, b.x2, b.y2] for b in ann.boxes if b.label == IDLE_LABEL],
                                     np.float64).reshape(-1, 4)
            for ann in read_hagrid(hagrid_root)[split]}


def _without(d: dict[str, np.ndarray], drop: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[~drop] for key, value in d.items()}


def by_hagrid_label(annotations: list, preds: list[dict[str, np.ndarray]], gts: list[dict[str, np.ndarray]],
                    scores: list[np.ndarray], idle: dict[str, np.ndarray], classes: list[str],
                    thresholds: dict[str, float]) -> dict[str, Any]:
    """Recall of the gesturing and the idle hands, and AP@0.5 with and without the idle hands."""
    idle_gt, kept_preds, kept_gts = [], [], []
    for ann, pred, gt in zip(annotations, preds, gts):
        boxes = idle[ann.image.stem]
        if len(boxes) == 0:
            idle_gt.append(np.zeros(len(gt["boxes"]), bool))
            kept_preds.append(pred)
            kept_gts.append(gt)
            continue
        is_idle = box_iou(gt["boxes"].astype(np.float64), boxes).max(1) >= 0.9  # the same box, converted
        on_idle = (box_iou(pred["boxes"].astype(np.float64), boxes).max(1) >= MATCH_IOU if len(pred["boxes"])
                   else np.zeros(0, bool))
        idle_gt.append(is_idle)
        kept_preds.append(_without(pred, on_idle))
        kept_gts.append(_without(gt, is_idle))
    is_idle, score = np.concatenate(idle_gt), np.concatenate(scores)
    return {
        "gesturing_hands": recall(score[~is_idle], thresholds),
        "idle_hands": recall(score[is_idle], thresholds),
        "ap50_every_hand": round(evaluate_detection(preds, gts, classes)["ap50"], 4),
        "ap50_idle_hands_ignored": round(evaluate_detection(kept_preds, kept_gts, classes)["ap50"], 4),
    }


def dataset_misses(root: Path, split: str, detector: Any, edge_px: float, thresholds: dict[str, float],
                   idle: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Recall by border contact and box height; with ``idle`` (HaGRID), also by HaGRID label."""
    annotations = read_kitti_dataset(root, split)
    preds, gts = detect_annotations(detector, annotations, detector.classes, {}, description=root.name)
    scores, edge, heights = [], [], []
    for ann, pred, gt in zip(annotations, preds, gts):
        width, height = ann.width, ann.height
        boxes = gt["boxes"]
        scores.append(best_scores(pred, gt))
        edge.append((boxes[:, 0] <= edge_px) | (boxes[:, 1] <= edge_px)
                    | (boxes[:, 2] >= width - edge_px) | (boxes[:, 3] >= height - edge_px))
        heights.append(boxes[:, 3] - boxes[:, 1])
    score, at_edge, height = np.concatenate(scores), np.concatenate(edge), np.concatenate(heights)
    missed = score < thresholds["app"]
    labels = {} if idle is None else {
        "by_hagrid_label": by_hagrid_label(annotations, preds, gts, scores, idle, detector.classes, thresholds)}
    return {
        "images": len(annotations),
        "all": recall(score, thresholds),
        "touching_the_frame_border": recall(score[at_edge], thresholds),
        "inside_the_frame": recall(score[~at_edge], thresholds),
        "by_box_height_px": {f"{lo:g}-{hi:g}": recall(score[(height >= lo) & (height < hi)], thresholds)
                             for lo, hi in HEIGHT_BINS},
        "missed_at_app_threshold": {"hands": int(missed.sum()), "touching_the_frame_border": int((missed & at_edge).sum())},
        **labels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="hand-detector", help="a zoo name or model file (.pt: torch backend)")
    parser.add_argument("--verifier", default=None, help="a hand verifier as the detector's second stage (default: none)")
    parser.add_argument("--datasets", type=Path, nargs="+",
                        default=[REPO / "work" / name for name in ("egohands", "hagrid_hand", "hands_yolo")])
    parser.add_argument("--split", default="test")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="the app's threshold")
    parser.add_argument("--floor", type=float, default=0.05, help="the lowest score the detector keeps")
    parser.add_argument("--edge-px", type=float, default=2.0)
    parser.add_argument("--hagrid", type=Path, default=DATA / "hagrid",
                        help="the HaGRID release the hagrid* dataset was converted from (its labels name the idle hands)")
    parser.add_argument("--out", type=Path, default=RESULTS / "detector_misses.json")
    args = parser.parse_args()

    detector = load_detector(args.detector, backend_for(args.detector), score_threshold=args.floor,
                             verifier=args.verifier)
    thresholds = {"app": args.score_threshold, "floor": args.floor}
    result = {
        "detector": args.detector, "verifier": args.verifier, "match_iou": MATCH_IOU, "thresholds": thresholds,
        "edge_px": args.edge_px,
        "datasets": {f"{root.name}_{args.split}": dataset_misses(
            root, args.split, detector, args.edge_px, thresholds,
            idle_hands(args.hagrid, args.split) if root.name.startswith("hagrid") else None)
            for root in args.datasets},
        "command": " ".join(["python3", *sys.argv]),
    }
    atomic_write_json(args.out, result)
    for name, r in result["datasets"].items():
        print(f"{name}: {r['all']['hands']} hands, recall {r['all']['recall_app']} at {args.score_threshold}; "
              f"touching the border {r['touching_the_frame_border']['hands']} hands, recall "
              f"{r['touching_the_frame_border']['recall_app']}; inside {r['inside_the_frame']['hands']}, "
              f"{r['inside_the_frame']['recall_app']}; missed {r['missed_at_app_threshold']}")
        if "by_hagrid_label" in r:
            h = r["by_hagrid_label"]
            print(f"  idle hands {h['idle_hands']['hands']}, recall {h['idle_hands']['recall_app']}; AP@0.5 "
                  f"{h['ap50_every_hand']}, {h['ap50_idle_hands_ignored']} with the idle hands ignored")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
