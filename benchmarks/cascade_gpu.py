"""Issue 6, item 6: the cascade with PyTorch on a CUDA GPU, FP16 and FP32, against the same models on the CPU.

Run on the GPU machine (``JOBS=cascade bash benchmarks/gpu/device_job.sh``); saves ``--out``
(default ``benchmarks/results/cascade_gpu.json``):

1. Throughput of the whole cascade through ``run_app`` (the ``gesturekit infer`` path: PyAV decode ->
   detector + hand verifier -> classifier -> tracker -> JSON Lines), the torch backend on ``cuda``
   in FP16 (the default there) and FP32 with CUDA graphs (the default), and FP16 without them, on
   ``asl_hand.25fps.mp4`` and its 640x480 copy: the median of ``--repeats`` runs, models loaded
   before the clock starts. The first run of a configuration also captures its CUDA graphs (about
   a second each), so keep ``--repeats`` at 3 or more for the median to leave that run out.
2. Same outputs: each CUDA run's JSON Lines against the torch FP32 run on the CPU (the same weights,
   the CPU path the tests check against ONNX Runtime): per frame, each reference hand's best-IoU
   hand of the CUDA run; hands matched at IoU >= 0.5, gestures equal, the largest score difference.
3. ``--copies`` copies of the video as as many sources of one FP16 run (the detector batches across
   sources): aggregate frames/s, whether each source's JSON equals the single-source FP16 run's,
   and how far it is from it (a batch of another size runs another CUDA graph).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascade_vs_mediapipe import DATA, REPO, Gesturekit, letterboxed_copy, machine_info, multi_source
from gesturekit.boxes import box_iou
from gesturekit.io import atomic_write_json
from gesturekit.pipeline.predictions import read_predictions

MATCH_IOU = 0.5


def agreement(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """How far ``other``'s JSON Lines records are from ``reference``'s, frame by frame."""
    if [r["frame"] for r in reference] != [r["frame"] for r in other]:
        raise SystemExit("the runs did not decode the same frames")
    hands = matched = same_gesture = same_count = 0
    worst_score, worst_iou = 0.0, 1.0
    for ref, out in zip(reference, other):
        a, b = ref["detections"], out["detections"]
        same_count += len(a) == len(b)
        hands += len(a)
        if not a or not b:
            continue
        iou = box_iou(np.array([d["bbox"] for d in a]), np.array([d["bbox"] for d in b]))
        for i, j in enumerate(iou.argmax(1)):
            if iou[i, j] >= MATCH_IOU:
                matched += 1
                same_gesture += a[i]["gesture"] == b[j]["gesture"]
                worst_score = max(worst_score, abs(a[i]["score"] - b[j]["score"]))
                worst_iou = min(worst_iou, float(iou[i, j]))
    return {"frames": len(reference), "frames_same_hand_count": same_count, "reference_hands": hands,
            "hands_matched": matched, "gestures_equal": same_gesture,
            "max_score_difference": round(worst_score, 5), "min_matched_iou": round(worst_iou, 4)}


def backends(gk: Gesturekit) -> list[Any]:
    """The backends of the detector, its verifier and the classifier."""
    verifier = gk.detector.verifier
    return [gk.detector.backend, *([verifier.classifier.backend] if verifier else []),
            *([gk.classifier.backend] if gk.classifier else [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DATA / "video" / "asl_hand.25fps.mp4")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "gesturekit-bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cascade_gpu.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on the GPU machine")

    videos = {"620x1080": args.video, "640x480": letterboxed_copy(args.video, args.cache_dir)}
    runs = {"cuda_fp16": Gesturekit(backend="torch", device="cuda"),
            "cuda_fp32": Gesturekit(backend="torch", device="cuda", precision="fp32"),
            "cuda_fp16_eager": Gesturekit(backend="torch", device="cuda"),
            "cpu_fp32": Gesturekit(backend="torch", device="cpu")}
    for backend in backends(runs["cuda_fp16_eager"]):
        backend.cuda_graphs = False
    result: dict[str, Any] = {"throughput": {}, "agreement_with_cpu_fp32": {}}
    with tempfile.TemporaryDirectory(prefix="gk-gpu-") as tmp:
        work = Path(tmp)
        for name, video in videos.items():
            fps: dict[str, Any] = {}
            for run, gk in runs.items():
                repeats = args.repeats if run.startswith("cuda") else 1
                timed = [gk.run([str(video)], work / f"{name}.{run}.jsonl") for _ in range(repeats)]
                fps[run] = {"fps": round(statistics.median(t["fps"] for t in timed), 2), "runs": timed}
                print(f"{name} {run}: {fps[run]['fps']} frames/s", flush=True)
            result["throughput"][name] = fps
            reference = read_predictions(work / f"{name}.cpu_fp32.jsonl")
            result["agreement_with_cpu_fp32"][name] = {
                run: agreement(reference, read_predictions(work / f"{name}.{run}.jsonl")) for run in runs if run != "cpu_fp32"}
        result["multi_source"] = []
        for copies in args.copies:
            (work / f"multi{copies}").mkdir()
            options = argparse.Namespace(copies=copies, max_foreign_cpu=float("inf"), retries=0)
            out = multi_source(runs["cuda_fp16"], args.video, options, work / f"multi{copies}")
            single = read_predictions(work / f"multi{copies}" / "single.jsonl")
            out["agreement_with_single"] = [agreement(single, read_predictions(work / f"multi{copies}" / f"multi.{i}.jsonl"))
                                            for i in range(copies)]
            print(f"{copies} sources: {out['aggregate_fps']} frames/s, JSON identical to one source: "
                  f"{out['json_identical_to_single']}", flush=True)
            result["multi_source"].append(out)
    result["machine"] = {**machine_info({}), "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                         "cuda": torch.version.cuda}
    result["models"] = runs["cuda_fp16"].models
    result["primary"] = runs["cuda_fp16"].config.primary.model_dump(mode="json")
    result["command"] = " ".join(["python3", *sys.argv])
    atomic_write_json(args.out, result)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
