"""The export job, run by ``gesturekit export`` and the workflow's export stage: load, export at a precision,
check parity and accuracy through the runtime, optionally build a TensorRT engine, and print what was done.

The check is why ``export`` sits above ``runtime`` and ``evaluation``: an export is judged by what the runtime
makes of it. This module loads torch and ONNX, so the command imports it when it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import nn

from gesturekit.data.transforms import pad_to_stride
from gesturekit.errors import GesturekitError, UsageError
from gesturekit.evaluation.detection import evaluate_detector_on
from gesturekit.export import FP32_TOLERANCE
from gesturekit.export.calibration import calibration_inputs, read_item, select_calibration_items
from gesturekit.export.onnx import check_parity
from gesturekit.export.precision import convert_fp16, default_calibration_cache, export_precision, quantize_int8
from gesturekit.export.tensorrt import TENSORRT_MISSING, build_engine, profile_shapes, tensorrt_available
from gesturekit.images import IMAGE_SUFFIXES, read_rgb
from gesturekit.models.metadata import read_onnx_metadata
from gesturekit.optimize.restore import load_model_from_checkpoint
from gesturekit.runtime.backend import Backend
from gesturekit.runtime.classifier import preprocess_crop
from gesturekit.runtime.detector import HandDetector, preprocess_frame
from gesturekit.runtime.loading import resolve_model_file
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend
from gesturekit.runtime.torch_backend import TorchBackend


def _preprocess(meta: dict, rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3] -> float32 [3,H,W] as at runtime (detector: frame; classifier: crop)."""
    size = int(meta["input_size"])
    return preprocess_frame(rgb, size)[0] if meta["task"] == "detection" else preprocess_crop(rgb, size)


def _batches(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    """[3,H,W] arrays stacked into one batch per shape."""
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for a in arrays:
        groups.setdefault(a.shape, []).append(a)
    return [torch.from_numpy(np.stack(g)) for g in groups.values()]


def parity_inputs(meta: dict, images_dir: Path | None, count: int) -> tuple[list[torch.Tensor], str]:
    """Batches [B,3,H,W] for the parity check: up to ``count`` images of ``images_dir``
    preprocessed as at runtime (one batch per detector input shape), else random tensors."""
    size = int(meta["input_size"])
    detection = meta["task"] == "detection"
    if images_dir is None:
        generator = torch.Generator().manual_seed(0)
        short = pad_to_stride(size * 3 / 4) if detection else size
        padded = pad_to_stride(size) if detection else size
        return [torch.randn(2, 3, short, padded, generator=generator)], f"2 random tensors [3,{short},{padded}]"
    if not images_dir.is_dir():
        raise GesturekitError(f"{images_dir}: not a directory")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not files:
        raise GesturekitError(f"{images_dir}: no .jpg/.jpeg/.png/.bmp image")
    return _batches([_preprocess(meta, read_rgb(p)) for p in files]), f"{len(files)} images of {images_dir}"


def _parity_batches(meta: dict, images: Path | None, sources: list[Path], split: str,
                    count: int) -> tuple[list[torch.Tensor], str]:
    """``--images`` if given, else ``count`` images of the calibration or evaluation datasets, else random."""
    if images is not None or not sources:
        return parity_inputs(meta, images, count)
    items = select_calibration_items(sources, split, count, boxes=meta["task"] == "classification")
    arrays = [_preprocess(meta, read_item(item, meta.get("crop"))) for item in items]
    return _batches(arrays), f"{len(items)} images of {', '.join(map(str, sources))} ({split})"


def _detection_ap(backend: Backend, datasets: list[Path], split: str) -> dict[str, float]:
    results = evaluate_detector_on(HandDetector(backend), datasets, split)
    return {name: float(result["ap50"]) for name, result in results.items()}


def _reference_name(reference: nn.Module | Path) -> str:
    """How the tables name what the export is compared with: the source ONNX file, or PyTorch."""
    if isinstance(reference, Path):
        return escape(reference.name)
    return "PyTorch QAT" if reference.metadata.get("qat") else "PyTorch FP32"


def _ap_table(reference: nn.Module | Path, path: Path, precision: str, datasets: list[Path], split: str) -> Table:
    """AP@0.5 of the reference (PyTorch model or source ONNX file) and of the exported file through the
    runtime detector."""
    backend = OnnxRuntimeBackend(reference) if isinstance(reference, Path) else TorchBackend(reference)
    before = _detection_ap(backend, datasets, split)
    exported = _detection_ap(OnnxRuntimeBackend(path), datasets, split)
    table = Table("dataset", _reference_name(reference), f"ONNX {precision}", "difference",
                  title=f"AP@0.5 ({split} split, runtime HandDetector)")
    for name, ap in before.items():
        table.add_row(escape(name), f"{100 * ap:.2f}", f"{100 * exported[name]:.2f}",
                      f"{100 * (exported[name] - ap):+.2f} points")
    return table


def _check_qat_export(checkpoint: Path, qat_target: str, precision: str, int8_target: str | None,
                      engine: bool) -> None:
    """A QAT checkpoint exports as INT8 QDQ on the grid it was trained for, and nothing else."""
    if precision != "int8":
        raise GesturekitError(f"{checkpoint}: a quantization-aware (QAT) checkpoint exports as int8 only "
                              f"(its fake quantization becomes QDQ); pass --precision int8")
    wanted = int8_target or ("tensorrt" if engine else qat_target)
    if wanted != qat_target:
        raise GesturekitError(f"{checkpoint}: trained with QAT for {qat_target}, not {wanted}; retrain with "
                              f"training.qat_target: {wanted}")


def _check_onnx_source(source: Path, meta: dict, precision: str) -> None:
    """An FP32 ONNX file converts to fp16 or int8, and nothing else does."""
    if meta.get("precision", "fp32") != "fp32":
        raise GesturekitError(f"{source}: a {meta['precision']} model; convert the FP32 ONNX file or export "
                              "from the checkpoint")
    if precision == "fp32":
        raise GesturekitError(f"{source}: already an FP32 ONNX model; pass --precision fp16 or int8")


def run_export(model: str, output: Path, precision: str = "fp32", calibration_images: list[Path] | None = None,
               calibration_split: str = "train", num_calibration: int = 200, calibration_cache: Path | None = None,
               int8_target: str | None = None, images: Path | None = None, num_images: int = 8,
               eval_dataset: list[Path] | None = None, eval_split: str = "test", engine: bool = False,
               max_batch: int = 8, opset: int = 17, tolerance: float | None = None,
               console: Console | None = None) -> None:
    """Export ``model`` (checkpoint, directory or zoo name, or an FP32 ONNX file to convert) as
    ``gesturekit export --help`` describes, printing what was done on ``console``.

    Raises:
        UsageError: ``engine`` without TensorRT, or int8 without calibration images or cache.
        GesturekitError: a source that cannot export at ``precision``, or a failed parity check.
    """
    if engine and not tensorrt_available():
        raise UsageError(TENSORRT_MISSING)
    cache = calibration_cache or default_calibration_cache(output)
    sources = list(calibration_images or [])
    reference: nn.Module | Path
    if Path(model).suffix.lower() == ".onnx":
        reference = model_file = resolve_model_file(model, "onnxruntime")
        meta = read_onnx_metadata(model_file)
        _check_onnx_source(model_file, meta, precision)
    else:
        model_file = resolve_model_file(model, "torch")
        reference = load_model_from_checkpoint(model_file)
        meta = reference.metadata
    qat = bool(meta.get("qat"))
    if qat:
        _check_qat_export(model_file, meta.get("qat_target", "tensorrt"), precision, int8_target, engine)
    elif precision == "int8" and not sources and not cache.is_file():
        raise UsageError(f"--precision int8 needs --calibration-images (no calibration cache {cache})")
    if eval_dataset and meta["task"] != "detection":
        raise GesturekitError(f"{model_file}: --eval-dataset compares detection AP; this is a {meta['task']} model")
    target = int8_target or ("tensorrt" if engine else "onnxruntime")
    console = console or Console(highlight=False, soft_wrap=True)

    calibration = None
    if precision == "int8" and not qat:
        if not sources:  # the check above: the cache exists
            console.print(f"calibration: reusing the ranges of {escape(str(cache))} (pass --calibration-images "
                          "to recalibrate)")
        else:
            items = select_calibration_items(sources, calibration_split, num_calibration,
                                             boxes=meta["task"] == "classification")
            calibration = calibration_inputs(items, lambda rgb: _preprocess(meta, rgb), meta.get("crop"))
            console.print(f"calibration: {len(items)} images of {escape(', '.join(map(str, sources)))} "
                          f"({calibration_split}), target {target}; cache {escape(str(cache))}")
    if isinstance(reference, Path):
        path = (convert_fp16(reference, output) if precision == "fp16"
                else quantize_int8(reference, output, calibration, cache, target))
    else:
        size = int(meta["input_size"])
        side = pad_to_stride(size) if meta["task"] == "detection" else size
        path = export_precision(reference, output, torch.zeros(1, 3, side, side), precision, calibration, cache,
                                target, opset)
    how = "QAT ranges" if qat else precision
    console.print(f"wrote {escape(str(path))} ({how}, {path.stat().st_size / 1e6:.1f} MB) from "
                  f"{escape(str(model_file))}")

    parity_sources, parity_split = (sources, calibration_split) if sources else (list(eval_dataset or []), eval_split)
    batches, described = _parity_batches(meta, images, parity_sources, parity_split, num_images)
    worst = check_parity(reference, path, batches)
    limit = tolerance if tolerance is not None else (FP32_TOLERANCE if precision == "fp32" else None)
    against = "PyTorch" if isinstance(reference, nn.Module) else _reference_name(reference)
    table = Table("output", "max abs diff", title=f"parity with {against} on {escape(described)}")
    if limit is not None:
        table.add_column("ok")
    if precision != "fp32":
        table.caption = "reduced precision differs most on low-score outputs: judge it by --eval-dataset AP"
    for name, diff in worst.items():
        table.add_row(name, f"{diff:.3g}", *([] if limit is None else ["yes" if diff <= limit else "[red]no[/red]"]))
    console.print(table)
    if images is None and not parity_sources:
        console.print("random inputs only: pass --images DIR to check on real images")

    if eval_dataset:
        console.print(_ap_table(reference, path, precision, list(eval_dataset), eval_split))
    if engine:
        shapes = profile_shapes(meta, max_batch)
        built = build_engine(path, output.with_suffix(".engine"), shapes, precision)
        console.print(f"wrote {escape(str(built))} (TensorRT {precision}; shapes min {shapes['min']}, "
                      f"opt {shapes['opt']}, max {shapes['max']})")
    failed = [name for name, diff in worst.items() if limit is not None and diff > limit]
    if failed:
        raise GesturekitError(f"{path}: parity check failed: {failed[0]} differs by {worst[failed[0]]:.3g} "
                              f"> tolerance {limit:g}")
