"""Write a zoo entry for a derived hand detector from a ``benchmarks/optimize_detector.py`` run, or record
the CPU latency that ``benchmarks/latency.py`` measured in the zoo models' ``eval.json``.

The benchmark measures the detector's INT8 and pruned variants side by side and keeps their ONNX files
(``--save-models DIR``); this script turns the chosen one into a zoo entry whose ``eval.json`` carries that run's
figures, so that what ships is what was measured.

    python benchmarks/optimize_detector.py --qat RUN/hand-detector-qat-last.pt --save-models runs/optimize
    python tools/release/write_zoo_entry.py int8 --models runs/optimize --qat RUN/hand-detector-qat-last.pt \\
        -o src/gesturekit/models/zoo/hand-detector-int8
    python tools/release/write_zoo_entry.py pruned -o src/gesturekit/models/zoo/hand-detector-pruned

``int8``: ``model.onnx``, ``spec.yaml``, ``eval.json`` and, for PTQ, ``model.calib.json``; for QAT, ``model.pt``
(the QAT checkpoint, so that ``gesturekit export`` can re-export it). ``pruned``: the ``eval.json`` of an entry
packaged by ``gesturekit models package`` from the retrained pruned checkpoint the run measured (``--pruned``).
``latency``: each model a ``latency.py`` result timed gets that run's model-call median in its ``eval.json``,
unless its ``eval.json`` already holds the latency measured beside the model it was made from (an INT8 or
pruned entry's):

    python tools/release/write_zoo_entry.py latency --result benchmarks/results/latency.json

Afterwards ``python tools/release/evaluate_zoo.py`` re-evaluates every zoo model, keeping each ``latency``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from gesturekit.export.precision import default_calibration_cache
from gesturekit.io import atomic_write_bytes, atomic_write_json
from gesturekit.models.zoo import zoo_path

BENCHMARK = "benchmarks/optimize_detector.py"


def _latency_device(result: dict[str, Any]) -> str:
    return f"{result['cpu']}, ONNX Runtime {result['onnxruntime']}"


def write_int8_entry(out: Path, result: dict[str, Any], models: Path, qat: Path | None) -> None:
    """The INT8 zoo entry: model.onnx, spec.yaml, eval.json, and the PTQ calibration cache or the
    QAT checkpoint (``model.pt``, its training spec as ``spec.yaml``)."""
    name = result["targets"]["int8_variant"]
    if (name == "int8-qat") != (qat is not None):
        raise SystemExit(f"the run's INT8 variant is {name}: pass --qat exactly when it is int8-qat")
    row, source = result["precision"][name], zoo_path(result["model"])
    int8 = models / f"{name}.onnx"
    # read before the stale files go: the QAT checkpoint may be out/model.pt itself
    state = None if qat is None else torch.load(qat, map_location="cpu", weights_only=True)
    for stale in (out / "model.pt", default_calibration_cache(out / "model.onnx")):
        stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(int8, out / "model.onnx")
    if state is None:
        calibration = row["calibration"]
        shutil.copyfile(default_calibration_cache(int8), default_calibration_cache(out / "model.onnx"))
        shutil.copyfile(source / "spec.yaml", out / "spec.yaml")
        how = {"quantization": "PTQ INT8 QDQ (onnxruntime target, per-channel weights)",
               "calibration": f"{calibration['images']} training images of {', '.join(calibration['sources'])} "
                              f"({calibration['method']})"}
    else:
        torch.save({k: state[k] for k in ("model", "metadata", "epoch", "spec", "version") if k in state},
                   out / "model.pt")
        atomic_write_bytes(out / "spec.yaml", yaml.safe_dump(state["spec"], sort_keys=False).encode())
        # a run stopped before its end has no training summary: its checkpoint's epoch and spec say what ran
        planned = state["spec"]["training"]
        training = state["metadata"].get("training") or {
            "epochs": f"{state['epoch']} of {planned['epochs']} (the run stopped there)",
            "precision": planned["precision"]}
        how = {"quantization": "QAT INT8 QDQ (onnxruntime target: uint8 activations, int8 per-channel weights)",
               "qat_training": {k: training.get(k) for k in ("epochs", "global_batch_size", "precision", "device",
                                                             "wall_time_s", "images_seen")}}
    atomic_write_json(out / "eval.json", {
        "task": "detection", "split": "test", "datasets": row["accuracy"],
        "ap50_diff_points_vs_fp32": row["ap50_diff_points_vs_fp32"],
        "latency": {"median_ms": row["median_ms"], "fp32_median_ms": result["precision"]["fp32"]["median_ms"],
                    "speedup_vs_fp32": row["speedup_vs_fp32"], "threads": result["threads"],
                    "input_shape": result["input_shape"], "device": _latency_device(result)},
        "source": {"model": source.name, **how, "benchmark": BENCHMARK},
    })


def write_pruned_eval(out: Path, result: dict[str, Any]) -> None:
    """``eval.json`` of the pruned zoo entry: accuracy, AP change and size against the unpruned model, latency."""
    row = result["pruning"].get("retrained_model")
    if row is None:
        raise SystemExit("the run measured no retrained pruned model (optimize_detector.py --pruned)")
    atomic_write_json(out / "eval.json", {
        "task": "detection", "split": "test", "datasets": row["accuracy"],
        "ap50_diff_points_vs_unpruned": row["ap50_diff_points_vs_fp32"],
        "reduction_percent_vs_unpruned": row["reduction_percent"], "params": row["after"]["params"],
        "macs": row["after"]["macs"],
        "latency": {"median_ms": row["median_ms"], "unpruned_median_ms": result["precision"]["fp32"]["median_ms"],
                    "speedup_vs_unpruned": row["speedup_vs_fp32"], "threads": result["threads"],
                    "input_shape": result["input_shape"], "device": _latency_device(result)},
        "source": {"model": result["model"], "pruning": "gesturekit prune -eq union, then retrained by spec.yaml",
                   "training": row["training"], "benchmark": BENCHMARK},
    })


def record_latency(result: dict[str, Any], benchmark: str) -> list[str]:
    """Write the model-call latency of each model a ``benchmarks/latency.py`` result timed into its eval.json;
    the names of the models written."""
    written = []
    for section in ("detector", "classifier"):
        row = result.get(section)
        if row is None:
            continue
        path = zoo_path(row["model"]) / "eval.json"
        data = json.loads(path.read_text())
        old = data.get("latency")
        if isinstance(old, dict) and ("fp32_median_ms" in old or "unpruned_median_ms" in old):
            continue  # timed beside the model it was made from (optimize_detector.py): that pair stays
        data["latency"] = {"median_ms": row["model_only"]["median_ms"],
                           "end_to_end_median_ms": row["end_to_end"]["median_ms"], "threads": result["threads"],
                           "input_shape": row["input"], "device": _latency_device(result),
                           "source": {"benchmark": benchmark}}
        atomic_write_json(path, data)
        written.append(row["model"])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("int8", "pruned", "latency"))
    parser.add_argument("--output", "-o", type=Path, help="int8, pruned: the zoo directory to write")
    parser.add_argument("--result", type=Path, default=Path("benchmarks/results/optimize_detector.json"),
                        help="the optimize_detector.py run whose figures the entry carries")
    parser.add_argument("--models", type=Path, help="that run's --save-models directory (int8)")
    parser.add_argument("--qat", type=Path, default=None, help="the QAT checkpoint the run measured (--qat)")
    args = parser.parse_args()
    result = json.loads(args.result.read_text())
    if args.kind == "latency":
        print("wrote the latency of", ", ".join(record_latency(result, str(args.result))) or "no model")
        return
    if args.output is None:
        parser.error(f"{args.kind}: needs --output")
    if args.kind == "int8":
        if args.models is None:
            parser.error("int8: needs --models")
        write_int8_entry(args.output, result, args.models, args.qat)
    else:
        write_pruned_eval(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
