"""CPU latency of the two-stage hand detector (detector + hand verifier) on real 640x480 frames.

A verifier's cost depends on what a frame holds (one crop per doubtful candidate, and with
``--refine-boxes small`` one per confident small hand), so one frame says little: every test
frame of EgoHands, HaGRID and hands_yolo is resized to 640x480 and run through the
``HandDetector`` call (letterbox, detector, decode, NMS, the verifier's crops, rescoring, box
head, NMS again) as ``gesturekit infer`` builds it (ONNX Runtime, batch 1, ``--threads``, idle
threads not spinning). Each set is timed over at least ``--runs`` calls after ``--warmup`` calls
(a set with fewer frames is passed over again), and gets its median, p90 and verifier crops per
frame; the headline is the slowest set's median against the 15 ms target.

    python benchmarks/latency_two_stage.py   # defaults: the configuration hand-verifier's eval.json scores

Writes benchmarks/results/latency_two_stage.json (``--out``); run it alone (``flock
/tmp/gesturekit-bench.lock``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import get_args

import numpy as np
import onnxruntime as ort
from common import REPO, RESULTS, cpu_name
from PIL import Image

from gesturekit.config.app import RefineBoxes
from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.io import atomic_write_json
from gesturekit.models.zoo import EVAL, zoo_path
from gesturekit.runtime.loading import load_detector

DATASETS = ("egohands", "hagrid_hand", "hands_yolo")
FRAME_SIZE = (640, 480)
TARGET_MEDIAN_MS = 15.0


def test_frames(root: Path) -> list[np.ndarray]:
    """The test split's images, each resized to 640x480 RGB."""
    return [np.asarray(Image.open(a.image).convert("RGB").resize(FRAME_SIZE, Image.BILINEAR))
            for a in read_kitti_dataset(root, "test")]


def main() -> None:
    scored = json.loads((zoo_path("hand-verifier") / EVAL).read_text())  # the pair whose AP the zoo records
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default=scored["detector"])
    parser.add_argument("--verifier", default=scored["verifier"])
    parser.add_argument("--refine-boxes", default=scored["refine_boxes"], choices=get_args(RefineBoxes))
    parser.add_argument("--candidate-threshold", type=float, default=scored["candidate_threshold"])
    parser.add_argument("--score-threshold", type=float, default=0.3, help="the app's primary.score_threshold")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100, help="the fewest timed calls per set")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--datasets", type=Path, nargs="+", default=[REPO / "work" / name for name in DATASETS])
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_two_stage.json")
    args = parser.parse_args()

    detector = load_detector(args.detector, threads=args.threads, score_threshold=args.score_threshold,
                             verifier=args.verifier, candidate_threshold=args.candidate_threshold,
                             refine_boxes=args.refine_boxes)
    classifier = detector.verifier.classifier
    crops = 0
    classifier_outputs = classifier.outputs

    def counted_outputs(batch: list[np.ndarray]) -> list[np.ndarray]:
        """The verifier's model call, counting its crops."""
        nonlocal crops
        crops += len(batch)
        return classifier_outputs(batch)

    classifier.outputs = counted_outputs  # type: ignore[method-assign]
    sets = {}
    for root in args.datasets:
        frames = test_frames(root)
        for frame in frames[:args.warmup]:
            detector([frame])
        passes = math.ceil(args.runs / len(frames))
        times, crops = [], 0
        for _ in range(passes):
            for frame in frames:
                start = time.perf_counter()
                detector([frame])
                times.append((time.perf_counter() - start) * 1000)
        timing = sets[f"{root.name}_test"] = {
            "frames": len(frames), "runs": len(times), "median_ms": statistics.median(times),
            "p90_ms": float(np.percentile(times, 90)), "verifier_crops_per_frame": round(crops / len(times), 2)}
        print(f"{root.name:12s} median {timing['median_ms']:6.2f} ms  p90 {timing['p90_ms']:6.2f} ms  "
              f"{timing['verifier_crops_per_frame']} crops a frame  ({len(times)} runs)")
    slowest = max(sets.values(), key=lambda s: s["median_ms"])["median_ms"]
    result = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": args.threads, "spin": False,
        "onnxruntime": ort.__version__, "frame": "x".join(map(str, FRAME_SIZE)),
        "detector": args.detector, "verifier": args.verifier, "refine_boxes": args.refine_boxes,
        "candidate_threshold": args.candidate_threshold, "trust_threshold": detector.verifier.trust_threshold,
        "score_threshold": args.score_threshold, "sets": sets, "slowest_set_median_ms": slowest,
        "target_median_ms": TARGET_MEDIAN_MS, "meets_target": slowest <= TARGET_MEDIAN_MS,
    }
    atomic_write_json(args.out, result)
    print(f"slowest set: median {slowest:.2f} ms (target {TARGET_MEDIAN_MS} ms); saved {args.out}")


if __name__ == "__main__":
    main()
