"""Gesture classifier candidates compared in the app, on the HaGRID ``test`` frames and the held-out crops.

Each ``--candidates`` model (zoo name or file) replaces the app's classifier; the rest of the app
is the default (detector, verifier, thresholds, gesture confirmation). Per candidate:

- the cascade through ``run_app`` on the HaGRID ``test`` frames, scored as
  ``cascade_vs_mediapipe.py`` scores it: accuracy over all annotated hands, over the gesture hands
  (``no_gesture`` left out), per class of the gesture hands, unmatched boxes per image;
- accuracy and macro-F1 on the held-out 15% of the HaGRID crops (``.pack/cls_crops_test.gkpack``),
  which no candidate trained on.

The test frames pick nothing by themselves: the script reports every candidate, and the note that
ships one says which were tried.

Usage: python benchmarks/classifier_candidates.py --candidates gesture-classifier-int8 new=runs/new_int8.onnx ...
Result: experiments/gesture_classifier_candidates/result.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import cascade_vs_mediapipe as cvm  # the benchmark's scoring and app path
from common import REPO

from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.evaluation.classification import evaluate_classifier_on
from gesturekit.io import atomic_write_json
from gesturekit.pipeline.predictions import read_predictions

OUT = REPO / "experiments" / "gesture_classifier_candidates" / "result.json"
HELD_OUT_CROPS = REPO / ".pack" / "cls_crops_test.gkpack"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", nargs="+", required=True,
                        help="classifier zoo names or model files, each as NAME=MODEL to name it in the result")
    parser.add_argument("--dataset", type=Path, default=REPO / "work" / "hagrid_gesture")
    parser.add_argument("--hagrid", type=Path, default=cvm.DATA / "hagrid")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    annotations = read_kitti_dataset(args.dataset, "test")
    raw_labels = cvm.hagrid_labels(annotations, args.hagrid, "test")
    result: dict[str, Any] = {"dataset": f"{args.dataset.name}/test", "hands": len(raw_labels),
                              "gesture_hands": sum(raw != "no_gesture" for raw in raw_labels),
                              "held_out_crops": HELD_OUT_CROPS.name, "candidates": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = cvm.image_folder(annotations, Path(tmp) / "frames")
        for candidate in args.candidates:
            name, _, model = candidate.rpartition("=")
            gk = cvm.Gesturekit(classifier=model)
            gk.run([str(folder)], Path(tmp) / "preds.jsonl")
            preds = {r["image"]: r["detections"] for r in read_predictions(Path(tmp) / "preds.jsonl")}
            scored = cvm.score_gesturekit(annotations, preds)
            crops = evaluate_classifier_on(gk.classifier, [HELD_OUT_CROPS], "test")
            crops = next(iter(crops.values()))
            entry = {**cvm.cascade_accuracy(scored["rows"], raw_labels),
                     "unmatched_detections_per_image": round(scored["unmatched_detections"] / len(annotations), 3),
                     "held_out_crops_accuracy": round(crops["accuracy"], 4),
                     "held_out_crops_macro_f1": round(crops["macro_f1"], 4)}
            result["candidates"][name or model] = entry
            print(f"{name or model}: {entry}")
    result["command"] = " ".join(["python3", *sys.argv])
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
