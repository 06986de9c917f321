"""Model metadata: the plain, JSON-able dict that travels with a model.

It is ``model.metadata`` in memory, the ``metadata`` entry of a checkpoint, and JSON under the
key ``gesturekit`` (``ONNX_KEY``) of an ONNX file's ``metadata_props``. Keys:

- ``task``: ``"detection"`` or ``"classification"``.
- ``arch``, ``arch_kwargs``: ``create_model(arch, **arch_kwargs, pretrained=False)`` rebuilds it.
- ``classes``: class names in output order.
- ``input_size``: detector: side of the square training canvas; at runtime a frame is resized to the pixel
  count of a 4:3 frame with this long side (``data.transforms.frame_scale``). Classifier: side of the square input.
- ``mean``, ``std``: per-channel normalisation of RGB scaled to [0, 1].
- ``postprocessing`` (detection): keyword arguments of ``models.postprocess.postprocess``.
- ``crop`` (classification): ``margin_px``, ``enlarge_ratio``, ``square`` of ``data.crops.widen_box``.
- ``training``: training summary (epochs, batch size, precision, ...); ``metrics``: evaluation results.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gesturekit.config.specs import CropConvention, DetectionPostprocessing
from gesturekit.data.geometry import MEAN, STD
from gesturekit.errors import GesturekitError
from gesturekit.models.postprocess import postprocess

ONNX_KEY = "gesturekit"
TASKS = ("detection", "classification")
_COMMON = ("task", "arch", "arch_kwargs", "classes", "input_size", "mean", "std")
_REQUIRED = {"detection": (*_COMMON, "postprocessing"), "classification": (*_COMMON, "crop")}
_POSTPROCESS_KEYS = set(inspect.signature(postprocess).parameters) - {"boxes", "scores"}


def postprocessing_from_spec(spec: DetectionPostprocessing) -> dict[str, Any]:
    """The spec's ``postprocessing`` section as ``postprocess`` keyword arguments."""
    out = spec.model_dump()
    out["score_threshold"] = out.pop("coverage_threshold")
    return out


def detector_metadata(
    arch: str,
    arch_kwargs: Mapping[str, Any],
    classes: list[str],
    input_size: int,
    postprocessing: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metadata of a detector (``arch_kwargs`` without ``pretrained``)."""
    return check_metadata({
        "task": "detection", "arch": arch, "arch_kwargs": dict(arch_kwargs), "classes": list(classes),
        "input_size": int(input_size), "mean": list(MEAN), "std": list(STD),
        "postprocessing": dict(postprocessing), "training": dict(training or {}), "metrics": dict(metrics or {}),
    }, "detector metadata")


def classifier_metadata(
    arch: str,
    arch_kwargs: Mapping[str, Any],
    classes: list[str],
    input_size: int,
    crop: CropConvention | Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metadata of a gesture classifier (``arch_kwargs`` without ``pretrained``)."""
    crop = crop if isinstance(crop, CropConvention) else CropConvention(**crop)
    return check_metadata({
        "task": "classification", "arch": arch, "arch_kwargs": dict(arch_kwargs), "classes": list(classes),
        "input_size": int(input_size), "mean": list(MEAN), "std": list(STD), "crop": crop.model_dump(),
        "training": dict(training or {}), "metrics": dict(metrics or {}),
    }, "classifier metadata")


def check_metadata(meta: Any, source: str, task: str | None = None) -> dict[str, Any]:
    """Validate the keys a runtime needs; ``task`` also checks the task.

    Raises:
        GesturekitError: naming ``source`` and the missing or wrong key.
    """
    if not isinstance(meta, Mapping) or not meta:
        raise GesturekitError(f"{source}: no gesturekit model metadata (task, arch, classes, ...)")
    if meta.get("task") not in TASKS:
        raise GesturekitError(f"{source}: metadata.task must be one of {', '.join(TASKS)} (got {meta.get('task')!r})")
    if task is not None and meta["task"] != task:
        raise GesturekitError(f"{source}: a {meta['task']} model, expected a {task} model")
    missing = [k for k in _REQUIRED[meta["task"]] if k not in meta]
    if missing:
        raise GesturekitError(f"{source}: metadata.{missing[0]} is missing")
    if meta["task"] == "detection":
        unknown = sorted(set(meta["postprocessing"]) - _POSTPROCESS_KEYS)
        if unknown:
            raise GesturekitError(f"{source}: metadata.postprocessing.{unknown[0]}: unknown key")
    return dict(meta)


def metadata_from_props(props: Mapping[str, str], source: str) -> dict[str, Any]:
    """The metadata in an ONNX model's ``metadata_props`` (as ``{key: value}``), validated.

    Raises:
        GesturekitError: no gesturekit key, invalid JSON or invalid metadata (naming ``source``).
    """
    if ONNX_KEY not in props:
        raise GesturekitError(f"{source}: no gesturekit metadata (metadata_props key {ONNX_KEY!r})")
    try:
        meta = json.loads(props[ONNX_KEY])
    except json.JSONDecodeError:
        raise GesturekitError(f"{source}: metadata_props[{ONNX_KEY!r}] is not valid JSON") from None
    return check_metadata(meta, source)


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in an ONNX file's ``metadata_props`` (validated), read with ONNX Runtime (a
    runtime install has no ``onnx`` package); the graph is loaded but not optimised.

    Raises:
        GesturekitError: the file is missing, not ONNX, or holds no valid gesturekit metadata.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise GesturekitError(f"{path}: ONNX file not found")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
        raise GesturekitError(f"{path}: not a readable ONNX model") from None
    return metadata_from_props(session.get_modelmeta().custom_metadata_map, str(path))
