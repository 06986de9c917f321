"""The model zoo: trained models shipped in ``models/zoo/<name>/`` (their cards: ``evaluation.cards``).

A zoo directory holds ``model.pt`` (checkpoint with ``metadata``), ``model.onnx`` (FP32, with
metadata), ``spec.yaml`` (the training spec), ``eval.json`` (evaluation results) and
``train_summary.json`` (written by training).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import check_metadata, read_onnx_metadata

ZOO_ROOT = Path(__file__).with_name("zoo")
CHECKPOINT, ONNX, SPEC, EVAL, SUMMARY = "model.pt", "model.onnx", "spec.yaml", "eval.json", "train_summary.json"
HEADLINE_METRICS = ("ap50", "map50", "ap", "map", "accuracy", "top1", "top1_accuracy")
"""Looked up in order (last part of the flattened ``eval.json`` key) for the zoo listing."""
CPU_MODELS = {"detector": "hand-detector-pruned-int8", "verifier": "hand-verifier",
              "classifier": "gesture-classifier-int8"}
FP32_MODELS = {"detector": "hand-detector", "verifier": "hand-verifier", "classifier": "gesture-classifier"}


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
    pruned INT8 detector, the verifier and the INT8 classifier (the fastest shipped combination
    on a CPU; its measurements are in docs/experiments.md), else the FP32 models."""
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


def read_model_json(path: Path) -> dict[str, Any]:
    """A model directory's JSON file (``eval.json``, ``train_summary.json``, ...) as a dict; ``{}`` when absent.

    Raises:
        GesturekitError: invalid JSON, or not a JSON object (one line naming the file).
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GesturekitError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GesturekitError(f"{path}: expected a JSON object")
    return data


def zoo_metadata(name: str) -> dict[str, Any]:
    """The model metadata of zoo model (or model directory) ``name`` (from ``model.onnx``, else ``model.pt``)."""
    path = model_dir(name)
    if (path / ONNX).is_file():
        return read_onnx_metadata(path / ONNX)
    from gesturekit.engine.checkpoint import load_checkpoint

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
    return _flatten(read_model_json(path / EVAL) or dict(meta.get("metrics") or {}))


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
