"""``gesturekit export``: a checkpoint or zoo model to ONNX (FP32, FP16 or INT8), or an FP32 ONNX file to
FP16 or INT8, with a parity
check, an optional accuracy comparison and an optional TensorRT engine."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gesturekit.export import FP32_TOLERANCE



class ExportPrecision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Int8Target(str, Enum):
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


def export(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Required. A training checkpoint (.pt, e.g. "
                                                 "results/best.pt; a QAT checkpoint exports as int8), a directory "
                                                 "with model.pt, a zoo model name, or an FP32 .onnx file to convert "
                                                 "to fp16 or int8 (compared with that file instead of PyTorch).",
                                                 show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Required. The .onnx file to write.",
                                                   show_default=False)] = None,
    precision: Annotated[ExportPrecision, typer.Option(
        help="Numeric precision: fp32; fp16 (float16 weights and activations, float32 inputs and outputs); "
        "int8 (QDQ: the ranges a QAT checkpoint learned, else post-training calibration, which needs "
        "--calibration-images or an existing cache).")
    ] = ExportPrecision.fp32,
    calibration_images: Annotated[Optional[list[Path]], typer.Option(
        help="INT8: a folder of images or a KITTI dataset (repeatable). Use training images, never the "
        "evaluation split.", show_default=False)] = None,
    calibration_split: Annotated[str, typer.Option(help="INT8: the split read from KITTI datasets.")] = "train",
    num_calibration: Annotated[int, typer.Option(
        min=1, help="INT8: calibrate on this many images, spread evenly over the sources.")] = 200,
    calibration_cache: Annotated[Optional[Path], typer.Option(
        help="INT8: JSON calibration cache; written when calibrating on --calibration-images, reused "
        "without them (TensorRT's calibration cache). (default: OUTPUT with "
        "suffix .calib.json)", show_default=False)] = None,
    int8_target: Annotated[Optional[Int8Target], typer.Option(
        help="INT8: onnxruntime (fast on CPU) or tensorrt (symmetric, for TensorRT). (default: tensorrt "
        "with --engine, else onnxruntime)", show_default=False)] = None,
    images: Annotated[Optional[Path], typer.Option(
        help="A folder of images for the parity check, preprocessed as at runtime (detector: whole frames; "
        "classifier: hand crops). Default: the calibration images, else the evaluation images, else "
        "random tensors.", show_default=False)] = None,
    num_images: Annotated[int, typer.Option(min=1, help="The parity check uses at most this many images.")] = 8,
    eval_dataset: Annotated[Optional[list[Path]], typer.Option(
        help="Detector: a KITTI dataset (repeatable) on which the AP@0.5 of the PyTorch model and of the "
        "export are printed.", show_default=False)] = None,
    eval_split: Annotated[str, typer.Option(help="The split of --eval-dataset.")] = "test",
    engine: Annotated[bool, typer.Option(
        "--engine", help="Also build a TensorRT engine (OUTPUT with suffix .engine); needs TensorRT.")] = False,
    max_batch: Annotated[int, typer.Option(min=1, help="--engine: the largest batch of the engine.")] = 8,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset version.")] = 17,
    tolerance: Annotated[Optional[float], typer.Option(
        min=0.0, help="Largest accepted absolute difference between PyTorch and ONNX Runtime outputs. "
        f"(default: {FP32_TOLERANCE:g} for fp32; fp16 and int8 only print it)", show_default=False)] = None,
) -> None:
    """Export a model to ONNX with its metadata, then compare ONNX Runtime with PyTorch.

    The detector gets dynamic batch, height and width; the classifier a dynamic batch. Exits 1 when
    an output differs by more than --tolerance (the file is kept for inspection).

    Example: gesturekit export -m hand-detector -o det-int8.onnx --precision int8
    --calibration-images work/egohands --eval-dataset work/egohands
    """
    if model is None or output is None:
        raise typer.BadParameter("--model and --output are required", param_hint="export")
    from gesturekit.export.job import run_export  # lazy: torch and ONNX load when the command runs

    run_export(model, output, precision.value, calibration_images, calibration_split, num_calibration,
               calibration_cache, int8_target.value if int8_target else None, images, num_images, eval_dataset,
               eval_split, engine, max_batch, opset, tolerance)
