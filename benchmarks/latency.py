"""CPU latency of zoo models through ONNX Runtime (batch 1, 2 threads by default): the FP32 pair by
default; the app's CPU default, the INT8 pair, with ``--detector hand-detector-pruned-int8 --classifier
gesture-classifier-int8 --out benchmarks/results/latency_int8.json``.

Each model runs alone, called back to back, so its ONNX Runtime threads may spin between calls
(``OnnxRuntimeBackend(spin=True)``; the cascade app keeps them from spinning, see runtime/).
Detector: a real 640x480 frame (an EgoHands test frame resized), timed as the model alone
(``session.run`` on the letterboxed input) and end to end (letterbox + run + decode + NMS, the
``HandDetector`` call); ``detector_16_9``: the same on the 640x360 frame itself (the runtime gives a
16:9 frame the pixel count of a 4:3 one: ``data.transforms.frame_scale``). Classifier: one real
160x160 hand crop, model alone and end to end.

    python benchmarks/latency.py [--threads 2] [--runs 200] [--detector NAME] [--classifier NAME]

Writes benchmarks/results/latency.json (``--out``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import DATA, RESULTS, cpu_name
from PIL import Image

from gesturekit.io import atomic_write_json
from gesturekit.runtime.classifier import GestureClassifier, preprocess_crop
from gesturekit.runtime.detector import HandDetector, preprocess_frame
from gesturekit.runtime.loading import resolve_model_file
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend



def timed(fn, runs: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": statistics.median(times), "p90_ms": float(np.percentile(times, 90)),
            "min_ms": min(times), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--detector", default="hand-detector")
    parser.add_argument("--classifier", default="gesture-classifier")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    args = parser.parse_args()

    frame_path = DATA / "egohands" / "images" / "CARDS_LIVINGROOM_B_T_frame_0032.jpg"
    wide = np.asarray(Image.open(frame_path).convert("RGB"))  # 640x360, 16:9
    frame = np.asarray(Image.fromarray(wide).resize((640, 480)))
    def backend(name: str) -> OnnxRuntimeBackend:
        return OnnxRuntimeBackend(resolve_model_file(name, "onnxruntime"), threads=args.threads, spin=True)

    detector = HandDetector(backend(args.detector))
    session: ort.InferenceSession = detector.backend.session

    def detector_timings(image: np.ndarray) -> dict:
        batch = preprocess_frame(image, detector.input_size)[0][None]
        return {"model": args.detector, "frame": f"{image.shape[1]}x{image.shape[0]}", "input": list(batch.shape),
                "model_only": timed(lambda: session.run(None, {"images": batch}), args.runs),
                "end_to_end": timed(lambda: detector([image]), args.runs), "target_median_ms": 15.0}

    det, det_wide = detector_timings(frame), detector_timings(wide)
    hands = detector([frame])[0]

    classifier = GestureClassifier(backend(args.classifier))
    crop = classifier.crop_region(frame, hands[0].bbox) if hands else frame[100:260, 200:360]
    cls_input = preprocess_crop(crop, classifier.input_size)[None]
    cls_session: ort.InferenceSession = classifier.backend.session
    cls_model = timed(lambda: cls_session.run(None, {"images": cls_input}), args.runs)
    cls_e2e = timed(lambda: classifier([crop]), args.runs)

    result = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": args.threads, "spin": True, "onnxruntime": ort.__version__,
        "detector": det, "detector_16_9": det_wide,
        "classifier": {"model": args.classifier, "input": list(cls_input.shape),
                       "model_only": cls_model, "end_to_end": cls_e2e, "target_median_ms": 3.0},
    }
    atomic_write_json(args.out, result)
    for name in ("detector", "detector_16_9", "classifier"):
        r = result[name]
        print(f"{name:13s} model {r['model_only']['median_ms']:6.2f} ms  "
              f"end-to-end {r['end_to_end']['median_ms']:6.2f} ms"
              f"  (median of {args.runs}, target {r['target_median_ms']} ms)")


if __name__ == "__main__":
    main()
