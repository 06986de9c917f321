"""Optimising the shipped hand detector on CPU: precision (FP32 / FP16 / INT8 PTQ / INT8 QAT)
and channel pruning (with the retrained pruned model), side by side, in one run.

Precision variants (all ONNX Runtime on CPU):

- ``fp32``: the shipped ``model.onnx``.
- ``fp16``: ``export.precision.convert_fp16`` of it (a GPU format; on CPU it is not faster).
- ``int8-ptq``: ``calibrate_int8`` (target onnxruntime: U8S8 QDQ, weights per channel, min-max
  ranges) on training images only: EgoHands train, HaGRID val, hands_yolo train.
- ``int8-qat``: with ``--qat CKPT``, the quantization-aware fine-tuned checkpoint
  (``recipes/hand_detector_qat.yaml``) through ``export_qat_onnx`` (onnxruntime target:
  U8S8 QDQ). Without it, ``int8-qat-untrained``: the same export path on the float model with the
  fake-quant ranges observed on the calibration images (BatchNorm statistics frozen).

Latency: median ONNX Runtime ``session.run`` on one 640x480 frame letterboxed as at runtime
([1,3,352,448]), batch 1, ``--threads`` intra-op threads, ``--runs`` runs after ``--warmup``;
the variants are interleaved run by run, under ``flock /tmp/gesturekit-bench.lock``, after waiting
for other processes to go quiet; the cores they used anyway are recorded. The end-to-end
``HandDetector`` call (letterbox + inference + NMS) is timed too.
Accuracy: AP@0.5 (VOC all-point) of the runtime ``HandDetector`` on the test splits of EgoHands,
HaGRID and hands_yolo.

Pruning: ``prune_model`` (L2 criterion, ``-eq union``) at each ``--thresholds`` value; params,
MACs (for [1,3,352,448]) and FP32 ONNX size before/after, latency, and AP@0.5 **without
retraining**; with ``--pruned CKPT`` the retrained pruned checkpoint (``gesturekit prune`` then
``recipes/hand_detector_pruned.yaml``) is measured the same way: that is the model the
pruning targets are about.

The INT8 targets are judged on ``int8-qat`` when ``--qat`` is given, else on ``int8-ptq``.
The pruning AP target is judged on EgoHands and HaGRID test (``PRUNE_AP_DATASETS``); the drop over
every set is reported beside it.
``--save-models DIR`` keeps the measured ONNX files (``DIR/<variant>.onnx``, PTQ's calibration cache
beside it), from which ``tools/release/write_zoo_entry.py`` makes a zoo entry with this run's figures.

Usage: python benchmarks/optimize_detector.py [--runs 200] [--qat RUN/best.pt] [--pruned RUN/best.pt]
                                              [--save-models runs/optimize]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from common import REPO, RESULTS, bench_lock, cpu_name
from PIL import Image
from rich.console import Console
from rich.table import Table

from gesturekit.evaluation.detection import evaluate_detector_on
from gesturekit.export.calibration import CalibrationItem, calibration_inputs, select_calibration_items
from gesturekit.export.onnx import export_onnx
from gesturekit.export.precision import convert_fp16, default_calibration_cache, quantize_int8
from gesturekit.export.qdq import export_qat_onnx
from gesturekit.io import atomic_write_json
from gesturekit.models.zoo import zoo_path
from gesturekit.optimize.prune import model_stats, prune_model
from gesturekit.optimize.qat import ActivationQuantizer, prepare_qat
from gesturekit.optimize.restore import load_model_from_checkpoint
from gesturekit.runtime.detector import HandDetector, preprocess_frame
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend

WORK = REPO / "work"
CALIBRATION = ((WORK / "egohands", "train"), (WORK / "hagrid_hand", "val"), (WORK / "hands_yolo", "train"))
EVALUATION = (WORK / "egohands", WORK / "hagrid_hand", WORK / "hands_yolo")
FRAME_SIZE = (640, 480)
METRICS = ("ap50", "ap50_95", "coco_ap50", "kitti_ap", "num_images", "best_f1")
TARGETS = {"int8_speedup": 1.5, "int8_ap_drop_points": 1.0, "prune_params_percent": 50.0,
           "prune_macs_percent": 40.0, "prune_ap_drop_points_after_retraining": 1.0}
PRUNE_AP_DATASETS = ("egohands_test", "hagrid_hand_test")
"""The test sets the pruning AP target names (EgoHands and HaGRID); the drop over every set is reported too."""


def calibration_items(count: int) -> list[CalibrationItem]:
    """``count`` training images spread evenly over the calibration datasets (never test images)."""
    share = [count // len(CALIBRATION) + (i < count % len(CALIBRATION)) for i in range(len(CALIBRATION))]
    return [item for (root, split), n in zip(CALIBRATION, share) for item in select_calibration_items([root], split, n)]


def qat_export(checkpoint: Path, qat_checkpoint: Path | None, items: list[CalibrationItem], out: Path,
               size: int) -> Path:
    """``export_qat_onnx`` of the QAT-trained checkpoint, or (without one) of the float model with
    ranges observed on ``items`` (no fine-tuning)."""
    if qat_checkpoint is not None:
        model = load_model_from_checkpoint(qat_checkpoint)
    else:
        model = prepare_qat(load_model_from_checkpoint(checkpoint)).eval()
        for module in model.modules():
            if isinstance(module, ActivationQuantizer):
                module.train()  # observe ranges; BatchNorm stays in eval mode
        with torch.no_grad():
            for image in calibration_inputs(items, lambda rgb: preprocess_frame(rgb, size)[0]):
                model.export_forward(torch.from_numpy(image))
    return export_qat_onnx(model.eval(), out, torch.zeros(1, 3, size, size))


def test_frame() -> np.ndarray:
    """A real EgoHands test image resized to 640x480 (uint8 RGB)."""
    name = (WORK / "egohands" / "splits" / "test.txt").read_text().split()[0]
    with Image.open(WORK / "egohands" / "images" / name) as image:
        return np.asarray(image.convert("RGB").resize(FRAME_SIZE, Image.BILINEAR))


def _busy_seconds() -> float:
    """CPU seconds spent busy by all processes since boot (``/proc/stat``; 0 where absent)."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return 0.0
    fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores kept busy by other processes between ``start()`` and ``cores()``."""

    def start(self) -> None:
        self.busy, self.own, self.wall = _busy_seconds(), time.process_time(), time.perf_counter()

    def cores(self) -> float:
        other = (_busy_seconds() - self.busy) - (time.process_time() - self.own)
        return max(other, 0.0) / (time.perf_counter() - self.wall)


def wait_for_quiet(max_wait_s: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait_s``) for a second in which other processes use < ``threshold`` cores."""
    load, deadline = OtherLoad(), time.perf_counter() + max_wait_s
    while True:
        load.start()
        time.sleep(1.0)
        cores = load.cores()
        if cores < threshold or time.perf_counter() > deadline:
            return cores


def time_variants(paths: dict[str, Path], frame: np.ndarray, threads: int, warmup: int, runs: int,
                  max_wait_s: float) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Model and end-to-end latency (ms) of each ONNX file, the variants interleaved run by run so
    that a burst of other work slows them alike.

    Returns:
        Per variant: median, p90 and min of ``session.run`` and the median of the ``HandDetector``
        call; and the cores other processes used just before and during the timing.
    """
    detectors = {name: HandDetector(OnnxRuntimeBackend(path, threads=threads)) for name, path in paths.items()}
    size = next(iter(detectors.values())).input_size
    batch = preprocess_frame(frame, size)[0][None]
    model_ms: dict[str, list[float]] = {name: [] for name in paths}
    e2e_ms: dict[str, list[float]] = {name: [] for name in paths}
    with bench_lock():
        before = wait_for_quiet(max_wait_s)
        load = OtherLoad()
        load.start()
        for detector in detectors.values():
            for _ in range(warmup):
                detector.backend.infer(batch)
                detector([frame])
        for i in range(runs):
            for name, detector in detectors.items():
                start = time.perf_counter()
                detector.backend.infer(batch)
                model_ms[name].append(1e3 * (time.perf_counter() - start))
                if i % 2 == 0:
                    start = time.perf_counter()
                    detector([frame])
                    e2e_ms[name].append(1e3 * (time.perf_counter() - start))
        during = load.cores()
    timing = {name: {"median_ms": statistics.median(model_ms[name]),
                     "p90_ms": float(np.percentile(model_ms[name], 90)), "min_ms": min(model_ms[name]),
                     "runs": len(model_ms[name]), "end_to_end_median_ms": statistics.median(e2e_ms[name]),
                     "end_to_end_runs": len(e2e_ms[name])} for name in paths}
    return timing, {"other_cores_before": before, "other_cores_during": during}


def evaluate(path: Path, threads: int) -> dict[str, dict[str, float]]:
    """AP@0.5, COCO and KITTI AP and best F1 of the runtime HandDetector on the evaluation test splits."""
    results = evaluate_detector_on(HandDetector(OnnxRuntimeBackend(path, threads=threads)), EVALUATION, "test")
    return {name: {k: r[k] for k in METRICS} for name, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hand-detector", help="zoo name of the detector")
    parser.add_argument("--out", type=Path, default=RESULTS / "optimize_detector.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-wait", type=float, default=600.0,
                        help="seconds to wait, holding the lock, for other processes to go quiet before timing")
    parser.add_argument("--num-calibration", type=int, default=200)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.6, 0.7])
    parser.add_argument("--qat", type=Path, default=None, help="QAT fine-tuned checkpoint of the detector")
    parser.add_argument("--pruned", type=Path, default=None, help="retrained pruned checkpoint of the detector")
    parser.add_argument("--save-models", type=Path, default=None,
                        help="keep the measured ONNX files here (tools/release/write_zoo_entry.py reads them)")
    args = parser.parse_args()
    if args.runs < 100:
        parser.error("--runs: at least 100")
    console = Console(width=200)
    source = zoo_path(args.model)
    checkpoint, fp32 = source / "model.pt", source / "model.onnx"
    size = int(load_model_from_checkpoint(checkpoint).metadata["input_size"])
    frame = test_frame()
    batch_shape = list(preprocess_frame(frame, size)[0][None].shape)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        items = calibration_items(args.num_calibration)
        console.print(f"calibration: {len(items)} training images "
                      f"({', '.join(f'{r.name}/{s}' for r, s in CALIBRATION)})")
        int8 = work / "int8" / "model.onnx"
        start = time.perf_counter()
        quantize_int8(fp32, int8, calibration_inputs(items, lambda rgb: preprocess_frame(rgb, size)[0]),
                      default_calibration_cache(int8), target="onnxruntime")
        calibration_s = time.perf_counter() - start
        qat_name = "int8-qat" if args.qat else "int8-qat-untrained"
        variants = {"fp32": fp32, "fp16": convert_fp16(fp32, work / "fp16.onnx"), "int8-ptq": int8,
                    qat_name: qat_export(checkpoint, args.qat, items, work / "qat.onnx", size)}

        prune_rows, pruned_paths = [], {}
        for threshold in args.thresholds:
            model = load_model_from_checkpoint(checkpoint)
            report = prune_model(model, torch.zeros(batch_shape), threshold)  # -eq union, l2: the defaults
            path = export_onnx(model, work / f"pruned-{threshold:g}.onnx", torch.zeros(batch_shape))
            pruned_paths[f"pruned-{threshold:g}"] = path
            prune_rows.append((threshold, report, path))
        retrained = None
        if args.pruned is not None:
            model = load_model_from_checkpoint(args.pruned)
            if not model.metadata.get("pruned"):
                parser.error(f"--pruned {args.pruned}: not a pruned checkpoint")
            example = torch.zeros(batch_shape)
            stats = model_stats(model, example), model_stats(load_model_from_checkpoint(checkpoint), example)
            pruned_paths["pruned-retrained"] = export_onnx(model, work / "pruned-retrained.onnx", example)
            retrained = {"checkpoint": str(args.pruned), "after": vars(stats[0]), "before": vars(stats[1]),
                         "training": {k: model.metadata.get("training", {}).get(k) for k in
                                      ("epochs", "completed_epochs", "global_batch_size", "device", "wall_time_s")}}

        console.print("timing (waiting for the benchmark lock)...")
        timing, load = time_variants({**variants, **pruned_paths}, frame, args.threads, args.warmup, args.runs,
                                     args.max_wait)
        accuracy = {name: evaluate(path, args.threads) for name, path in {**variants, **pruned_paths}.items()}

        base_ms = timing["fp32"]["median_ms"]
        precision = {}
        for name, path in variants.items():
            precision[name] = {
                "file_mb": path.stat().st_size / 1e6, **timing[name],
                "speedup_vs_fp32": base_ms / timing[name]["median_ms"],
                "accuracy": accuracy[name],
                "ap50_diff_points_vs_fp32": {d: 100 * (r["ap50"] - accuracy["fp32"][d]["ap50"])
                                             for d, r in accuracy[name].items()},
            }
        precision["int8-ptq"]["calibration"] = {"images": len(items), "seconds": calibration_s,
                                                "sources": [f"{r.name}/{s}" for r, s in CALIBRATION],
                                                "target": "onnxruntime", "method": "minmax", "per_channel": True}
        precision[qat_name]["note"] = (
            f"QAT fine-tuned checkpoint {args.qat} (onnxruntime target, U8S8 QDQ)" if args.qat else
            "QAT export path without QAT fine-tuning: fake-quant ranges observed on the calibration images")
        pruning = {"retrained": False, "equalization": "union", "criterion": "l2", "input_shape": batch_shape,
                   "note": "AP after pruning WITHOUT retraining; the targets are for the retrained model",
                   "thresholds": []}
        for threshold, report, path in prune_rows:
            name = f"pruned-{threshold:g}"
            pruning["thresholds"].append({
                "threshold": threshold, "before": vars(report.before), "after": vars(report.after),
                "reduction_percent": report.reduction(), **timing[name],
                "speedup_vs_fp32": base_ms / timing[name]["median_ms"],
                "accuracy_without_retraining": accuracy[name],
                "ap50_diff_points_vs_fp32": {d: 100 * (r["ap50"] - accuracy["fp32"][d]["ap50"])
                                             for d, r in accuracy[name].items()},
            })

        if retrained is not None:
            name = "pruned-retrained"
            retrained.update({
                "reduction_percent": {k: 100.0 * (1 - retrained["after"][k] / retrained["before"][k])
                                      for k in ("params", "macs", "onnx_bytes")},
                **timing[name], "speedup_vs_fp32": base_ms / timing[name]["median_ms"], "accuracy": accuracy[name],
                "ap50_diff_points_vs_fp32": {d: 100 * (r["ap50"] - accuracy["fp32"][d]["ap50"])
                                             for d, r in accuracy[name].items()},
            })
            pruning["retrained_model"] = retrained

        int8_name = "int8-qat" if args.qat else "int8-ptq"
        chosen = precision[int8_name]
        prune_targets: dict = {"params_percent": TARGETS["prune_params_percent"],
                               "macs_percent": TARGETS["prune_macs_percent"],
                               "size_met_at_thresholds": [t for t, r, _ in prune_rows
                                                          if r.reduction()["params"] >= TARGETS["prune_params_percent"]
                                                          and r.reduction()["macs"] >= TARGETS["prune_macs_percent"]]}
        if retrained is None:
            prune_targets["ap_after_retraining"] = "not measured (no --pruned checkpoint)"
        else:
            diffs = retrained["ap50_diff_points_vs_fp32"]
            drop = max(-diffs[d] for d in PRUNE_AP_DATASETS)
            red = retrained["reduction_percent"]
            prune_targets["retrained"] = {
                "params_percent": red["params"], "macs_percent": red["macs"], "ap_drop_points": drop,
                "ap_drop_datasets": list(PRUNE_AP_DATASETS),
                "ap_drop_points_all_datasets": max(-d for d in diffs.values()),
                "met": red["params"] >= TARGETS["prune_params_percent"] and red["macs"] >= TARGETS["prune_macs_percent"]
                and drop <= TARGETS["prune_ap_drop_points_after_retraining"]}
        targets = {
            "int8_variant": int8_name,
            "int8_speedup": {"target": TARGETS["int8_speedup"], "measured": chosen["speedup_vs_fp32"],
                             "met": chosen["speedup_vs_fp32"] >= TARGETS["int8_speedup"]},
            "int8_ap_drop_points": {"target": TARGETS["int8_ap_drop_points"],
                                    "measured": max(-d for d in chosen["ap50_diff_points_vs_fp32"].values()),
                                    "met": all(-d <= TARGETS["int8_ap_drop_points"]
                                               for d in chosen["ap50_diff_points_vs_fp32"].values())},
            "pruning": prune_targets,
        }
        result = {
            "model": args.model, "frame": list(FRAME_SIZE), "input_shape": batch_shape, "threads": args.threads,
            "cpu_used_by_other_processes": load, "warmup": args.warmup, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "onnxruntime": ort.__version__, "torch": torch.__version__,
            "evaluation": [f"{p.name}/test" for p in EVALUATION], "precision": precision, "pruning": pruning,
            "targets": targets,
        }
        atomic_write_json(args.out, result)
        if args.save_models is not None:
            save_models(args.save_models, {**variants, **pruned_paths})

    print_tables(console, result)
    console.print(f"wrote {args.out}")


def save_models(out: Path, paths: dict[str, Path]) -> None:
    """Copy each variant's ONNX file to ``out/<variant>.onnx``, with its calibration cache where it has one."""
    out.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        shutil.copyfile(path, out / f"{name}.onnx")
        if default_calibration_cache(path).is_file():
            shutil.copyfile(default_calibration_cache(path), default_calibration_cache(out / f"{name}.onnx"))


def print_tables(console: Console, result: dict) -> None:
    datasets = list(result["precision"]["fp32"]["accuracy"])
    other = result["cpu_used_by_other_processes"]["other_cores_during"]
    table = Table(title=f"precision: ONNX Runtime CPU, {result['threads']} threads, input {result['input_shape']} "
                        f"(other processes used {other:.2f} cores during the timing)")
    for column in ("variant", "MB", "median ms", "e2e ms", "speedup",
                   *[f"AP50 {d}" for d in datasets], *[f"dAP {d}" for d in datasets]):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in result["precision"].items():
        table.add_row(name, f"{row['file_mb']:.2f}", f"{row['median_ms']:.2f}", f"{row['end_to_end_median_ms']:.2f}",
                      f"{row['speedup_vs_fp32']:.2f}x", *[f"{100 * row['accuracy'][d]['ap50']:.2f}" for d in datasets],
                      *[f"{row['ap50_diff_points_vs_fp32'][d]:+.2f}" for d in datasets])
    console.print(table)
    table = Table(title="pruning (-eq union, l2): AP WITHOUT retraining, and the retrained model")
    for column in ("pth", "params", "MACs", "ONNX MB", "params -%", "MACs -%", "ONNX -%", "median ms",
                   *[f"AP50 {d}" for d in datasets]):
        table.add_column(column, justify="right")
    for row in result["pruning"]["thresholds"]:
        red = row["reduction_percent"]
        table.add_row(f"{row['threshold']:g}", f"{row['before']['params']:,} -> {row['after']['params']:,}",
                      f"{row['before']['macs'] / 1e6:.0f}M -> {row['after']['macs'] / 1e6:.0f}M",
                      f"{row['before']['onnx_bytes'] / 1e6:.2f} -> {row['after']['onnx_bytes'] / 1e6:.2f}",
                      f"{red['params']:.1f}", f"{red['macs']:.1f}", f"{red['onnx_bytes']:.1f}",
                      f"{row['median_ms']:.2f}",
                      *[f"{100 * row['accuracy_without_retraining'][d]['ap50']:.2f}" for d in datasets])
    row = result["pruning"].get("retrained_model")
    if row is not None:
        red = row["reduction_percent"]
        table.add_row("retrained", f"{row['before']['params']:,} -> {row['after']['params']:,}",
                      f"{row['before']['macs'] / 1e6:.0f}M -> {row['after']['macs'] / 1e6:.0f}M",
                      f"{row['before']['onnx_bytes'] / 1e6:.2f} -> {row['after']['onnx_bytes'] / 1e6:.2f}",
                      f"{red['params']:.1f}", f"{red['macs']:.1f}", f"{red['onnx_bytes']:.1f}",
                      f"{row['median_ms']:.2f}", *[f"{100 * row['accuracy'][d]['ap50']:.2f}" for d in datasets])
    console.print(table)
    for key, value in result["targets"].items():
        console.print(f"target {key}: {value}")


if __name__ == "__main__":
    main()
