"""Evaluate a hand detector on KITTI datasets in pixels of the original images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.data.records import ImageAnnotation
from gesturekit.errors import GesturekitError
from gesturekit.images import read_rgb
from gesturekit.io import atomic_write_json
from gesturekit.metrics.detection import evaluate_detection
from gesturekit.metrics.plots import save_pr_curve
from gesturekit.runtime.detector import HandDetector


def detect_annotations(detector: HandDetector, annotations: Sequence[ImageAnnotation], classes: Sequence[str],
                       class_map: Mapping[str, str], batch_size: int = 8, description: str = "detecting"
                       ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Run the detector over annotated images; returns (predictions, ground truths) for the metrics."""
    preds, gts = [], []
    for start in track(range(0, len(annotations), batch_size), description=description, transient=True):
        batch = annotations[start:start + batch_size]
        for ann, found in zip(batch, detector([read_rgb(a.image) for a in batch])):
            labels = []
            for box in ann.boxes:
                name = class_map.get(box.label, box.label)
                if name not in classes:
                    raise GesturekitError(f"{ann.image}: class {box.label!r} is not one of {list(classes)}")
                labels.append(classes.index(name))
            gts.append({"boxes": np.array([[b.x1, b.y1, b.x2, b.y2] for b in ann.boxes], np.float32).reshape(-1, 4),
                        "labels": np.array(labels, np.int64)})
            preds.append({"boxes": np.array([d.bbox for d in found], np.float32).reshape(-1, 4),
                          "scores": np.array([d.score for d in found], np.float32),
                          "labels": np.array([detector.classes.index(d.label) for d in found], np.int64)})
    return preds, gts


def evaluate_detector_on(detector: HandDetector, datasets: Sequence[Path], split: str,
                         class_map: Mapping[str, str] | None = None, min_width: float = 0.0,
                         min_height: float = 0.0, kitti_iou_threshold: float = 0.7,
                         out_dir: Path | None = None) -> dict[str, Any]:
    """AP@0.5 (VOC), AP@0.5:0.95 (COCO) and KITTI-style AP of each dataset's ``split``.

    Writes ``<out_dir>/<dataset>.json`` and ``<dataset>_pr.png`` when ``out_dir`` is given.
    """
    results: dict[str, Any] = {}
    for root in map(Path, datasets):
        annotations = read_kitti_dataset(root, split)
        preds, gts = detect_annotations(detector, annotations, detector.classes, class_map or {},
                                        description=f"{root.name}/{split}")
        result = evaluate_detection(preds, gts, detector.classes, kitti_iou_threshold=kitti_iou_threshold,
                                    min_width=min_width, min_height=min_height)
        name = f"{root.name}_{split}"
        if out_dir is not None:
            save_pr_curve(result, out_dir / f"{name}_pr.png", title=f"{name} precision-recall")
            atomic_write_json(out_dir / f"{name}.json", {k: v for k, v in result.items() if k != "curves"})
        results[name] = {k: v for k, v in result.items() if k not in ("curves",)}
    return results
