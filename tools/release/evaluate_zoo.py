"""Evaluate the shipped zoo models on held-out real data; write each model's eval.json.

    bash tools/gpu/make_packs.sh      # once: KITTI datasets under work/, test packs under .pack/
    python tools/release/evaluate_zoo.py
    python tools/release/models_doc.py     # docs/models.md from the new eval.json files

Detector (``hand-detector``): AP@0.5 (VOC), AP@0.5:0.95 (COCO) and KITTI AP@0.7 on the EgoHands
test split, the HaGRID `test` frames (every annotated hand) and the hands_yolo test split. Its INT8
and pruned derivatives (made, timed and first evaluated by ``benchmarks/optimize_detector.py``) are evaluated
again the same way: their ``eval.json`` gets the new AP and AP differences to the model each was
made from, and keeps its latency and source. ``hand-detector-pruned`` was made from hand-detector v3,
which is no longer in the zoo: pass it as ``--pruned-reference`` (``git show
702ed13:src/gesturekit/models/zoo/hand-detector/model.pt > runs/init/hand_detector_v3.pt``) to
refresh that difference. ``hand-verifier``: the AP of the two-stage CPU detector (``TWO_STAGE_*``:
``hand-detector-int8`` whose candidates the verifier rescores and refines) and its differences to
that detector alone. Classifier: macro-F1 and the
confusion matrix on the held-out 15% of HaGRID crops and on crops cut from the HaGRID `test` frames,
for ``gesture-classifier`` and ``gesture-classifier-int8`` (with its macro-F1 difference to FP32).
Results: src/gesturekit/models/zoo/<name>/eval.json; PR curves and confusion matrices in docs/models/<name>/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gesturekit.evaluation.classification import evaluate_classifier_on
from gesturekit.evaluation.detection import evaluate_detector_on
from gesturekit.io import atomic_write_json
from gesturekit.models.zoo import EVAL, zoo_path
from gesturekit.runtime.detector import HandDetector
from gesturekit.runtime.loading import backend_for, load_classifier, load_detector

PLOTS = Path("docs/models")
DETECTION_SETS = {"egohands_test": 0.95, "hagrid_hand_test": 0.90, "hands_yolo_test": 0.95}
CLASSIFICATION_SETS = {"cls_crops_test_test": 0.95, "hagrid_gesture_test": 0.90}
TWO_STAGE_DETECTOR = "hand-detector-int8"
TWO_STAGE_VERIFIER = {"verifier": "hand-verifier", "refine_boxes": "small", "candidate_threshold": 0.1}
"""The two-stage CPU detector (``load_detector(TWO_STAGE_DETECTOR, **TWO_STAGE_VERIFIER)``): its AP and this
configuration go to the verifier's eval.json and, in short, to the detector's (``with_verifier``);
``benchmarks/latency_two_stage.py`` times the configuration that eval.json names."""
DERIVED_DETECTORS = {  # zoo name: (the zoo model it was made from, its eval.json key for the AP differences)
    "hand-detector-int8": ("hand-detector", "ap50_diff_points_vs_fp32"),
    "hand-detector-pruned": (None, "ap50_diff_points_vs_unpruned"),  # from v3: --pruned-reference
    "hand-detector-pruned-int8": ("hand-detector-pruned", "ap50_diff_points_vs_fp32"),
}


def evaluate_detector(name: str, plots: bool = True) -> dict:
    """A zoo detector (or a checkpoint, ``plots=False``) on the three test sets."""
    return detection_result(load_detector(name, backend_for(name), threads=2), PLOTS / name if plots else None)


def evaluate_two_stage(alone: dict) -> dict:
    """The two-stage detector on the three test sets, every rescored candidate kept (as ``gesturekit evaluate
    detector --verifier``), with the AP differences to ``alone``, its detector's own result."""
    detector = load_detector(TWO_STAGE_DETECTOR, threads=2, score_threshold=0.0, **TWO_STAGE_VERIFIER)
    result = detection_result(detector, PLOTS / "hand-verifier")
    return {**result, "detector": TWO_STAGE_DETECTOR, **TWO_STAGE_VERIFIER, "trust_threshold": detector.verifier.trust_threshold,
            "verifier_weight": detector.verifier.weight, "detector_alone_ap50": {
                k: v["ap50"] for k, v in alone["datasets"].items()},
            "ap50_diff_points_vs_detector_alone": diff_points(result, alone, "ap50"),
            "pair_latency": "benchmarks/results/latency_two_stage.json (python benchmarks/latency_two_stage.py)"}


def detection_result(detector: HandDetector, plot_dir: Path | None) -> dict:
    """The eval.json of ``detector`` on the three test sets (PR curves in ``plot_dir``)."""
    results = evaluate_detector_on(detector, [Path("work/egohands"), Path("work/hagrid_hand"), Path("work/hands_yolo")],
                                   "test", min_width=4.0, min_height=4.0, out_dir=plot_dir)
    return {
        "task": "detection", "split": "test",
        "datasets": {k: {m: v[m] for m in ("ap50", "ap50_95", "coco_ap50", "kitti_ap", "num_images", "best_f1")}
                     for k, v in results.items()},
        "targets_ap50": DETECTION_SETS,
        "meets_targets": {k: results[k]["ap50"] >= t for k, t in DETECTION_SETS.items()},
    }


def diff_points(result: dict, reference: dict, metric: str) -> dict[str, float]:
    """``metric`` of ``result`` minus that of ``reference``, per dataset, in points."""
    return {k: 100 * (r[metric] - reference["datasets"][k][metric]) for k, r in result["datasets"].items()}


def evaluate_derived_detectors(summary: dict, pruned_reference: Path | None) -> dict:
    """The derived detectors' eval.json with new AP (``evaluate_detector``) and AP differences; the rest kept."""
    derived = {}
    for name, (source, diff_key) in DERIVED_DETECTORS.items():
        stored = json.loads((zoo_path(name) / EVAL).read_text())
        result = evaluate_detector(name)
        stored.update({k: result[k] for k in ("datasets", "targets_ap50", "meets_targets")})
        reference = {**summary, **derived}.get(source)
        if reference is None and pruned_reference is not None:
            reference = evaluate_detector(str(pruned_reference), plots=False)
        if reference is not None:
            stored[diff_key] = diff_points(stored, reference, "ap50")
        else:
            print(f"{name}: {diff_key} kept from its last measurement (pass --pruned-reference to refresh it)")
        derived[name] = stored
    return derived


def evaluate_classifier(name: str) -> dict:
    classifier = load_classifier(name, threads=2)
    results = evaluate_classifier_on(classifier, [Path(".pack/cls_crops_test.gkpack"), Path("work/hagrid_gesture")],
                                     "test", out_dir=PLOTS / name)
    return {
        "task": "classification", "split": "test", "datasets": results,
        "targets_macro_f1": CLASSIFICATION_SETS,
        "meets_targets": {k: results[k]["macro_f1"] >= t for k, t in CLASSIFICATION_SETS.items()},
    }


def int8_result(int8: dict, fp32: dict) -> dict:
    """An INT8 classifier's result with its macro-F1 difference to the FP32 model, in points."""
    return {**int8, "precision": "int8", "macro_f1_diff_points_vs_fp32": diff_points(int8, fp32, "macro_f1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pruned-reference", type=Path, default=None,
                        help="the unpruned checkpoint hand-detector-pruned was made from (hand-detector v3)")
    args = parser.parse_args()
    summary = {"hand-detector": evaluate_detector("hand-detector"),
               "gesture-classifier": evaluate_classifier("gesture-classifier")}
    summary.update(evaluate_derived_detectors(summary, args.pruned_reference))
    two_stage = summary["hand-verifier"] = evaluate_two_stage(summary[TWO_STAGE_DETECTOR])
    summary[TWO_STAGE_DETECTOR]["with_verifier"] = {  # the detector's own eval.json names its two-stage AP too
        **TWO_STAGE_VERIFIER, "meets_targets": two_stage["meets_targets"],
        "ap50": {k: v["ap50"] for k, v in two_stage["datasets"].items()}, "details": "hand-verifier/eval.json"}
    summary["gesture-classifier-int8"] = int8_result(evaluate_classifier("gesture-classifier-int8"),
                                                     summary["gesture-classifier"])
    for name, result in summary.items():
        stored = json.loads((zoo_path(name) / EVAL).read_text()) if (zoo_path(name) / EVAL).is_file() else {}
        if isinstance(stored.get("latency"), dict):  # measured by a benchmark, not here (write_zoo_entry.py)
            result.setdefault("latency", stored["latency"])
        atomic_write_json(zoo_path(name) / EVAL, result)
    for name, result in summary.items():
        for dataset, r in result["datasets"].items():
            key = "ap50" if result["task"] == "detection" else "macro_f1"
            print(f"{name:18s} {dataset:22s} {key} {r[key]:.4f}  meets target: {result['meets_targets'][dataset]}")
    print(json.dumps({k: v["meets_targets"] for k, v in summary.items()}))


if __name__ == "__main__":
    main()
