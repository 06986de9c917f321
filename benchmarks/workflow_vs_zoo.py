"""The GPU workflow's models against the shipped models they remake, on the same test images.

Each pair (workflow variant -> zoo model) is run on every evaluation set of the variant's spec, read from the
workflow's output folder (``OUT/data/<set>``, ``OUT/packs/<pack>``), both models through ONNX Runtime with their own
spec's score threshold. Detectors are compared on AP@0.5, classifiers on macro-F1, each with a paired bootstrap
over the test images or crops (``metrics.bootstrap``): a difference whose 95% interval holds 0 is within the noise
of that test set. The interval leaves out the spread between training runs (seeds), which one run cannot measure:
it is the stricter test, and a gap just outside it reads with that in mind (the shipped hand-detector-pruned
against hand-detector on hands_yolo's 253 test frames: -0.005 AP@0.5, interval [-0.012, -0.001]).

Usage: python benchmarks/workflow_vs_zoo.py --out runs/gesture-gpu
   (OUT as the GPU run left it; where only the state came back, `gesturekit workflow run workflows/gesture-gpu.yaml
   -o OUT --only convert`, then `--only pack`, make the test sets again: not a plain run, as packs made with another
   Pillow differ in their bytes and a plain run would train again)
Result: benchmarks/results/workflow_vs_zoo.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, cpu_name

from gesturekit.config.base import load_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec
from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.evaluation.classification import classify_source
from gesturekit.evaluation.detection import detect_annotations
from gesturekit.io import atomic_write_json
from gesturekit.metrics.classification import paired_bootstrap_macro_f1
from gesturekit.metrics.detection import paired_bootstrap_ap50
from gesturekit.models.zoo import ONNX, SPEC, zoo_path
from gesturekit.runtime.detector import HandDetector
from gesturekit.runtime.loading import load_classifier, load_detector

PAIRS = {"detector-fp32": "hand-detector", "detector-pruned-fp32": "hand-detector-pruned",
         "detector-pruned-int8": "hand-detector-pruned-int8", "detector-qat-int8": "hand-detector-int8",
         "classifier-fp32": "gesture-classifier", "classifier-int8": "gesture-classifier-int8"}
"""workflows/gesture-gpu.yaml's exports and the shipped models their recipes made."""


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def local_set(out: Path, path: Path) -> Path:
    """An evaluation set the spec names on the machine that trained it, in this output folder."""
    return out / path.parent.name / path.name


def compare(out: Path, variant: str, zoo_name: str, resamples: int) -> list[dict[str, Any]]:
    folder = out / "models" / variant
    task = "classifier" if variant.startswith("classifier") else "detector"
    spec_type = ClassifierSpec if task == "classifier" else DetectorSpec
    spec = load_spec(folder / SPEC, spec_type, check_files=False)
    zoo_spec = load_spec(zoo_path(zoo_name) / SPEC, spec_type, check_files=False)
    cfg, class_map, rows = spec.evaluation, spec.dataset.class_map, []
    if isinstance(spec, DetectorSpec) and isinstance(zoo_spec, DetectorSpec):
        ours = load_detector(folder / ONNX, score_threshold=spec.postprocessing.coverage_threshold)
        shipped = load_detector(zoo_name, score_threshold=zoo_spec.postprocessing.coverage_threshold)
    else:
        ours, shipped = load_classifier(folder / ONNX), load_classifier(zoo_name)
    for dataset in (local_set(out, Path(p)) for p in cfg.datasets):
        if isinstance(ours, HandDetector):
            annotations = read_kitti_dataset(dataset, cfg.split)
            preds, gts = detect_annotations(ours, annotations, ours.classes, class_map)
            preds_zoo, _ = detect_annotations(shipped, annotations, ours.classes, class_map)
            result, metric = paired_bootstrap_ap50(preds, preds_zoo, gts, ours.classes, resamples), "ap50"
        else:
            y_true, pred = classify_source(ours, dataset, cfg.split, class_map)
            _, pred_zoo = classify_source(shipped, dataset, cfg.split, class_map)
            result, metric = paired_bootstrap_macro_f1(y_true, pred, pred_zoo, spec.dataset.classes, resamples), \
                "macro_f1"
        rows.append({"workflow": variant, "zoo": zoo_name, "set": f"{dataset.stem}_{cfg.split}", "metric": metric,
                     "workflow_value": result["a"], "zoo_value": result["b"], "difference": result["difference"],
                     "interval_95": result["interval"], "within_noise": result["within_noise"],
                     "items": result["num_items"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the GPU workflow's output folder")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--result", type=Path, default=RESULTS / "workflow_vs_zoo.json")
    args = parser.parse_args()
    rows, missing = [], []
    for variant, zoo_name in PAIRS.items():
        if (args.out / "models" / variant / ONNX).is_file():
            rows += compare(args.out, variant, zoo_name, args.resamples)
        else:
            missing.append(variant)
    for r in rows:
        low, high = r["interval_95"]
        print(f"{r['workflow']:<22} {r['set']:<24} {r['metric']:<8} workflow {r['workflow_value']:.3f}  "
              f"zoo {r['zoo_value']:.3f}  diff {r['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
              f"{'' if r['within_noise'] else '  OUTSIDE the noise'}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    atomic_write_json(args.result, {
        "question": "do the GPU workflow's models match the shipped models they remake, within the test sets' noise?",
        "command": " ".join(["python3", *sys.argv]), "machine": cpu_name(), "onnxruntime": ort_version(),
        "workflow_output": str(args.out), "commit": commit.strip(), "resamples": args.resamples,
        "missing_variants": missing, "rows": rows,
        "all_within_noise": bool(rows) and all(r["within_noise"] for r in rows)})
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
