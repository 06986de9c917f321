"""The model zoo: trained models shipped in ``models/zoo/<name>/`` and their model cards.

A zoo directory holds ``model.pt`` (checkpoint with ``metadata``), ``model.onnx`` (FP32, with
metadata), ``spec.yaml`` (the training spec), ``eval.json`` (evaluation results) and
``train_summary.json`` (written by training). The model card is generated from these files alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import torch
import yaml

from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import check_metadata, read_onnx_metadata

ZOO_ROOT = Path(__file__).with_name("zoo")
CHECKPOINT, ONNX, SPEC, EVAL, SUMMARY = "model.pt", "model.onnx", "spec.yaml", "eval.json", "train_summary.json"
HEADLINE_METRICS = ("ap50", "map50", "ap", "map", "accuracy", "top1", "top1_accuracy")
"""Looked up in order (last part of the flattened ``eval.json`` key) for the zoo listing."""
CPU_MODELS = {"detector": "hand-detector-pruned-int8", "verifier": "hand-verifier",
              "classifier": "gesture-classifier-int8"}
FP32_MODELS = {"detector": "hand-detector", "verifier": "hand-verifier", "classifier": "gesture-classifier"}
_SPEED_WORDS = ("per_s", "fps", "latency", "throughput")
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model, as listed by ``list_zoo``."""

    name: str
    path: Path
    task: str
    arch: str
    backbone: str | None
    classes: list[str]
    input_size: int
    headline: tuple[str, float] | None
    """The main evaluation metric ``(key, value)`` from ``eval.json``, if any."""


def zoo_names() -> list[str]:
    """Names of the zoo directories that hold a model (``model.onnx`` or ``model.pt``)."""
    if not ZOO_ROOT.is_dir():
        return []
    return sorted(p.name for p in ZOO_ROOT.iterdir()
                  if p.is_dir() and ((p / ONNX).is_file() or (p / CHECKPOINT).is_file()))


def default_models(backend: str, device: str) -> dict[str, str]:
    """The app's ``detector``, ``verifier`` and ``classifier``: for ONNX Runtime on the CPU the
    pruned INT8 detector, the verifier and the INT8 classifier (their speed and HaGRID accuracy
    against the FP32 pair and against the app without a verifier: benchmarks/results/
    cascade_vs_mediapipe*.json), else the FP32 models."""
    return CPU_MODELS if backend == "onnxruntime" and device == "cpu" else FP32_MODELS


def zoo_path(name: str) -> Path:
    """The directory of zoo model ``name``.

    Raises:
        GesturekitError: ``name`` is not in the zoo (the message lists the zoo).
    """
    names = zoo_names()
    if name not in names:
        raise GesturekitError(f"unknown zoo model {name!r} (zoo: {', '.join(names) or 'empty'})")
    return ZOO_ROOT / name


def model_dir(name_or_path: str) -> Path:
    """The directory of a zoo model, or ``name_or_path`` itself when it is a directory holding
    ``model.onnx`` or ``model.pt`` (e.g. one written by ``gesturekit models package``)."""
    path = Path(name_or_path)
    if path.is_dir() and ((path / ONNX).is_file() or (path / CHECKPOINT).is_file()):
        return path
    return zoo_path(name_or_path)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GesturekitError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GesturekitError(f"{path}: expected a JSON object")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise GesturekitError(f"{path}: invalid YAML") from None
    return data if isinstance(data, dict) else {}


def zoo_metadata(name: str) -> dict[str, Any]:
    """The model metadata of zoo model (or model directory) ``name`` (from ``model.onnx``, else ``model.pt``)."""
    path = model_dir(name)
    if (path / ONNX).is_file():
        return read_onnx_metadata(path / ONNX)
    return check_metadata(load_checkpoint(path / CHECKPOINT).get("metadata"), str(path / CHECKPOINT))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``{"a.b": value}`` (lists and strings are skipped)."""
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def _evaluation(path: Path, meta: dict[str, Any]) -> dict[str, float]:
    return _flatten(_read_json(path / EVAL) or dict(meta.get("metrics") or {}))


def _headline(metrics: dict[str, float]) -> tuple[str, float] | None:
    for wanted in HEADLINE_METRICS:
        for key, value in metrics.items():
            if key.rsplit(".", 1)[-1].lower() == wanted:
                return key, value
    return None


def list_zoo() -> list[ZooEntry]:
    """Every zoo model, sorted by name."""
    entries = []
    for name in zoo_names():
        meta = zoo_metadata(name)
        path = ZOO_ROOT / name
        entries.append(ZooEntry(
            name=name, path=path, task=meta["task"], arch=meta["arch"],
            backbone=meta["arch_kwargs"].get("backbone"), classes=list(meta["classes"]),
            input_size=int(meta["input_size"]), headline=_headline(_evaluation(path, meta)),
        ))
    return entries


def _parameter_count(path: Path) -> int | None:
    """Learnable parameters from ``model.pt`` (batch-norm statistics excluded)."""
    if not (path / CHECKPOINT).is_file():
        return None
    weights = load_checkpoint(path / CHECKPOINT).get("model") or {}
    return sum(t.numel() for k, t in weights.items() if isinstance(t, torch.Tensor) and not k.endswith(_BN_BUFFERS))


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1000 else f"{value:.4g}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    return lines + [f"| {k} | {v} |" for k, v in rows]


def _input_text(meta: dict[str, Any]) -> str:
    size = meta["input_size"]
    if meta["task"] == "detection":
        return (f"RGB, resized (aspect kept) to the pixel count of a {size}x{round(size * 3 / 4)} frame, "
                f"padded to a multiple of 32")
    crop = meta["crop"]
    shape = ", squared" if crop.get("square") else ""
    return (f"RGB hand crop resized to {size}x{size} (box enlarged x{crop['enlarge_ratio']:g}{shape}, "
            f"margin {crop['margin_px']:g} px)")


def _sources_text(sources: list[Any]) -> str:
    """A spec's data sources as `path` or `path:split`, a source listed n times in a row as "x n"."""
    names = [f"{s['path']}:{s['split']}" if isinstance(s, dict) else str(s) for s in sources]
    runs = [(name, len(list(group))) for name, group in groupby(names)]
    return ", ".join(f"`{name}`" + (f" x{count}" if count > 1 else "") for name, count in runs)


def _training_rows(summary: dict[str, Any], spec: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if "epochs" in summary:
        done = summary.get("completed_epochs")
        partial = done not in (None, summary["epochs"])
        rows.append(("Epochs", f"{summary['epochs']}" + (f" (completed {done})" if partial else "")))
    if "batch_size_per_gpu" in summary:
        world = summary.get("world_size", 1)
        rows.append(("Batch size", f"{summary['batch_size_per_gpu']} per GPU x {world} = "
                                   f"{summary.get('global_batch_size', summary['batch_size_per_gpu'] * world)}"))
    if "precision" in summary:
        amp = summary.get("amp_dtype")
        rows.append(("Precision", summary["precision"] + (f" (autocast {amp})" if amp and amp != "float32" else "")))
    if "optimizer" in summary:
        rows.append(("Optimizer", str(summary["optimizer"])))
    if summary.get("ema_decay") is not None:
        warmup = " (ramped up from the first iterations)" if summary.get("ema_warmup") else ""
        rows.append(("Weights", f"moving average, decay {summary['ema_decay']} per iteration{warmup}"))
    dataset = spec.get("dataset") or {}
    for split in ("train", "val"):
        if dataset.get(split):
            rows.append((f"Dataset ({split})", _sources_text(dataset[split])))
    if summary.get("images_seen") is not None:
        rows.append(("Images seen", f"{int(summary['images_seen']):,}"))
    if summary.get("wall_time_s") is not None:
        rows.append(("Wall time", _duration(float(summary["wall_time_s"]))))
    if summary.get("device"):
        rows.append(("Device", str(summary["device"])))
    if summary.get("images_per_s") is not None:
        rows.append(("Training throughput", f"{float(summary['images_per_s']):,.1f} images/s"))
    if summary.get("best_metric") is not None:
        rows.append(("Best validation", f"{summary.get('metric_key')} {float(summary['best_metric']):.4f} "
                                        f"(epoch {summary.get('best_epoch')})"))
    return rows


def _quantization_text(quantization: dict | None) -> str:
    """How an INT8 model got its ranges: calibrated (PTQ) or learned (QAT)."""
    if not quantization:
        return ""
    how = "quantization-aware trained" if quantization.get("mode") == "qat" else "calibrated"
    return f" (INT8 QDQ, {how})"


def model_card(name: str) -> str:
    """A markdown model card generated from the files of zoo model (or model directory) ``name``."""
    path = model_dir(name)
    meta = zoo_metadata(name)
    params = _parameter_count(path)
    backbone = meta["arch_kwargs"].get("backbone")
    files = [f"`{f}` ({(path / f).stat().st_size / 1e6:.1f} MB)" for f in (CHECKPOINT, ONNX) if (path / f).is_file()]
    model_rows = [
        ("Task", meta["task"]),
        ("Classes", ", ".join(meta["classes"])),
        ("Input", _input_text(meta)),
        ("Architecture", meta["arch"] + (f" (backbone {backbone})" if backbone else "")),
        ("Inference precision", str(meta.get("precision", "fp32")) + _quantization_text(meta.get("quantization"))),
    ]
    if params is not None:
        model_rows.append(("Parameters", f"{params / 1e6:.2f} M"))
    model_rows.append(("Files", ", ".join(files)))
    lines = [f"# {path.name}", "", *_table(model_rows, ("Property", "Value")), ""]

    metrics = _evaluation(path, meta)
    accuracy = {k: v for k, v in metrics.items() if not any(w in k.lower() for w in _SPEED_WORDS)}
    speed = {k: v for k, v in metrics.items() if k not in accuracy}
    if accuracy:
        lines += ["## Evaluation", "", *_table([(k, _number(v)) for k, v in accuracy.items()], ("Metric", "Value")), ""]
    if speed:
        lines += ["## Speed", "", *_table([(k, _number(v)) for k, v in speed.items()], ("Measure", "Value")), ""]

    summary = _read_json(path / SUMMARY) or dict(meta.get("training") or {})
    training = _training_rows(summary, _read_yaml(path / SPEC))
    if meta.get("weight_average"):
        average = meta["weight_average"]
        training.append(("Weights", "average of " + ", ".join(
            f"`{file}` ({share:g})" for file, share in zip(average["checkpoints"], average["weights"]))))
    if training:
        lines += ["## Training", "", *_table(training, ("Setting", "Value")), ""]
    if meta["task"] == "detection":
        post = [(k, f"{v}") for k, v in meta["postprocessing"].items()]
        lines += ["## Post-processing", "", *_table(post, ("Parameter", "Value")), ""]
    return "\n".join(lines)
