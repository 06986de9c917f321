"""How the classifier's crop enlargement at inference changes gesture accuracy on the HaGRID test frames.

The shipped classifier was trained with ``crop.enlarge_ratio`` 1.3, but most of its training images
are the tight HaGRID hand crops (27k), on which widening cannot add context. This sweep classifies
(1) every ground-truth hand box and (2) the cascade's own detections (as ``cascade_vs_mediapipe.py``
scores them: best IoU >= 0.5, a missed hand counts as wrong) with each ``--ratios`` value; as in the
cascade, a crop smaller than ``secondary.min_crop_size`` gets no gesture and counts as wrong.
It is a diagnostic on the test split, not a way to pick the shipped value.

Usage: python benchmarks/classifier_crop_ratio.py [--ratios 1.0 1.15 1.3 1.5]
Result: experiments/classifier_crop_ratio/result.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cascade_vs_mediapipe as cvm  # the benchmark's scoring and app path
from common import REPO

from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.evaluation.detection import read_rgb
from gesturekit.io import atomic_write_json
from gesturekit.pipeline.predictions import read_predictions

OUT = REPO / "experiments" / "classifier_crop_ratio" / "result.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=REPO / "work" / "hagrid_gesture")
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 1.15, 1.3, 1.5])
    args = parser.parse_args()
    annotations = read_kitti_dataset(args.dataset, "test")
    result: dict = {"dataset": f"{args.dataset.name}/test", "hands": sum(len(a.boxes) for a in annotations)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = cvm.image_folder(annotations, Path(tmp) / "frames")
        frames = {ann.image: read_rgb(ann.image) for ann in annotations}
        boxes = [box for ann in annotations for box in ann.boxes]
        for pair in ((None, None), ("hand-detector", "gesture-classifier")):
            gk = cvm.Gesturekit(detector=pair[0], classifier=pair[1])
            name = f"{gk.models['detector']} + {gk.models['classifier']}"
            min_crop = gk.config.secondary.min_crop_size
            result[name] = {"ground_truth_boxes": {}, "cascade": {}}
            for ratio in args.ratios:
                gk.classifier.crop["enlarge_ratio"] = ratio
                crops = [gk.classifier.crop_region(frames[ann.image], (box.x1, box.y1, box.x2, box.y2))
                         for ann in annotations for box in ann.boxes]  # in the order of boxes
                # as in the cascade, a crop under secondary.min_crop_size gets no gesture (wrong)
                gt = cvm.class_accuracy([(box.label, p if min(crop.shape[:2]) >= min_crop else "none")
                               for box, crop, (p, _) in zip(boxes, crops, gk.classifier(crops))])
                gk.run([str(folder)], Path(tmp) / "p.jsonl")
                preds = {r["image"]: r["detections"] for r in read_predictions(Path(tmp) / "p.jsonl")}
                cascade = cvm.class_accuracy(cvm.score_gesturekit(annotations, preds)["rows"])
                result[name]["ground_truth_boxes"][str(ratio)] = gt
                result[name]["cascade"][str(ratio)] = cascade
                print(f"{name:50s} ratio {ratio:<5g} GT boxes {gt['accuracy']:.4f}  cascade {cascade['accuracy']:.4f}  "
                      f"{cascade['per_class']}", flush=True)
    result["command"] = " ".join(["python3", *sys.argv])
    atomic_write_json(OUT, result)
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
