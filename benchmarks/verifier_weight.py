"""The hand verifier's share of a rescored candidate's score (``primary.verifier_weight``), swept.

For each weight, on this CPU with the app's default models (``gesturekit infer``'s path, ONNX Runtime):

1. The cascade on the HaGRID ``test`` frames (``work/hagrid_gesture``), scored as
   ``cascade_vs_mediapipe.py`` scores it: gesture accuracy over all annotated hands and over the
   gesture hands (HaGRID's idle ``no_gesture`` hands left out), hands detected, and detections that
   match no annotated hand, per image.
2. AP@0.5 of the default detector with the verifier at that weight (every candidate kept, as
   ``gesturekit evaluate detector --verifier`` keeps them) on the EgoHands, HaGRID and hands_yolo
   test splits.

Saves ``experiments/verifier_weight/result.json`` (``--out``).

    python benchmarks/verifier_weight.py [--weights 0.3 0.5 0.7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from cascade_vs_mediapipe import Gesturekit, cascade_accuracy, hagrid_labels, image_folder, score_gesturekit
from common import DATA, REPO
from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.evaluation.detection import evaluate_detector_on
from gesturekit.io import atomic_write_json
from gesturekit.pipeline.predictions import read_predictions
from gesturekit.runtime.loading import load_detector


def app_accuracy(gk: Gesturekit, annotations: list[Any], raw_labels: list[str], folder: Path,
                 out: Path) -> dict[str, Any]:
    """The cascade's gesture accuracy on the images of ``folder`` (all hands and gesture hands), scored as
    ``cascade_vs_mediapipe.py`` scores it."""
    gk.run([str(folder)], out)
    scored = score_gesturekit(annotations, {r["image"]: r["detections"] for r in read_predictions(out)})
    accuracy = cascade_accuracy(scored["rows"], raw_labels)
    return {"accuracy_all_hands": accuracy["all_hands"], "accuracy_gesture_hands": accuracy["gesture_hands"],
            "hands_detected": scored["detected"], "hands": len(scored["rows"]),
            "unmatched_detections_per_image": round(scored["unmatched_detections"] / len(annotations), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--dataset", type=Path, default=REPO / "work" / "hagrid_gesture")
    parser.add_argument("--hagrid", type=Path, default=DATA / "hagrid", help="HaGRID's own annotations")
    parser.add_argument("--detection-datasets", type=Path, nargs="+",
                        default=[REPO / "work" / name for name in ("egohands", "hagrid_hand", "hands_yolo")])
    parser.add_argument("--out", type=Path,
                        default=REPO / "experiments" / "verifier_weight" / "result.json")
    args = parser.parse_args()

    annotations = read_kitti_dataset(args.dataset, "test")
    raw_labels = hagrid_labels(annotations, args.hagrid, "test")
    result: dict[str, Any] = {"weights": {}}
    with tempfile.TemporaryDirectory(prefix="gk-vw-") as tmp:
        folder = image_folder(annotations, Path(tmp) / "frames")
        for weight in args.weights:
            gk = Gesturekit(verifier_weight=weight)
            app = app_accuracy(gk, annotations, raw_labels, folder, Path(tmp) / f"w{weight}.jsonl")
            primary = gk.config.primary
            detector = load_detector(gk.models["detector"], score_threshold=0.0, verifier=gk.models["verifier"],
                                     candidate_threshold=primary.candidate_threshold,
                                     trust_threshold=primary.trust_threshold, verifier_weight=weight)
            ap = evaluate_detector_on(detector, args.detection_datasets, "test")
            result["weights"][f"{weight:g}"] = {"app_on_hagrid_test": app,
                                                "ap50": {name: round(r["ap50"], 4) for name, r in ap.items()}}
            print(f"weight {weight:g}: {app}; AP@0.5 {result['weights'][f'{weight:g}']['ap50']}", flush=True)
        result["models"] = gk.models
    result["command"] = " ".join(["python3", *sys.argv])
    atomic_write_json(args.out, result)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
