"""``gesturekit export``: a checkpoint or zoo model to ONNX, with a parity check."""

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import typer
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gesturekit.errors import GesturekitError
from gesturekit.export.onnx import check_parity, export_onnx
from gesturekit.runtime.classifier import preprocess_crop
from gesturekit.runtime.detector import PAD_STRIDE, preprocess_frame
from gesturekit.runtime.loading import load_model_from_checkpoint, resolve_model_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ExportPrecision(str, Enum):
    fp32 = "fp32"


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError):
        raise GesturekitError(f"{path}: not a readable image") from None


def parity_inputs(meta: dict, images_dir: Path | None, count: int) -> tuple[list[torch.Tensor], str]:
    """Batches [B,3,H,W] for the parity check: up to ``count`` images of ``images_dir``
    preprocessed as at runtime (one batch per detector input shape), else random tensors."""
    size = int(meta["input_size"])
    detection = meta["task"] == "detection"
    if images_dir is None:
        generator = torch.Generator().manual_seed(0)
        short = math.ceil(size * 3 / 4 / PAD_STRIDE) * PAD_STRIDE if detection else size
        padded = math.ceil(size / PAD_STRIDE) * PAD_STRIDE if detection else size
        return [torch.randn(2, 3, short, padded, generator=generator)], f"2 random tensors [3,{short},{padded}]"
    if not images_dir.is_dir():
        raise GesturekitError(f"{images_dir}: not a directory")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not files:
        raise GesturekitError(f"{images_dir}: no .jpg/.jpeg/.png/.bmp image")
    if detection:
        arrays = [preprocess_frame(_read_rgb(p), size)[0] for p in files]
    else:
        arrays = [preprocess_crop(_read_rgb(p), size) for p in files]
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for a in arrays:
        groups.setdefault(a.shape, []).append(a)
    return [torch.from_numpy(np.stack(g)) for g in groups.values()], f"{len(files)} images of {images_dir}"


def export(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A training checkpoint (.pt, e.g. results/best.pt), "
                                         "a directory with model.pt, or a zoo model name.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write.", show_default=False)],
    precision: Annotated[ExportPrecision, typer.Option(
        help="Numeric precision of the exported model.")] = ExportPrecision.fp32,
    images: Annotated[Optional[Path], typer.Option(
        help="A folder of images for the parity check, preprocessed as at runtime (detector: whole frames; "
        "classifier: hand crops). Default: random tensors.", show_default=False)] = None,
    num_images: Annotated[int, typer.Option(min=1, help="At most this many images of --images.")] = 8,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset version.")] = 17,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Largest accepted absolute difference between "
                                             "PyTorch and ONNX Runtime outputs.")] = 1e-3,
) -> None:
    """Export a model to ONNX with its metadata, then compare ONNX Runtime with PyTorch.

    The detector gets dynamic batch, height and width; the classifier a dynamic batch. Exits 1 when
    an output differs by more than --tolerance (the file is kept for inspection).
    """
    checkpoint = resolve_model_file(model, "torch")
    net = load_model_from_checkpoint(checkpoint)
    size = int(net.metadata["input_size"])
    side = math.ceil(size / PAD_STRIDE) * PAD_STRIDE if net.metadata["task"] == "detection" else size
    path = export_onnx(net, output, torch.zeros(1, 3, side, side))
    batches, described = parity_inputs(net.metadata, images, num_images)
    worst: dict[str, float] = {}
    for batch in batches:
        for name, diff in check_parity(net, path, batch).items():
            worst[name] = max(worst.get(name, 0.0), diff)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"wrote {escape(str(path))} ({precision.value}, {path.stat().st_size / 1e6:.1f} MB) from "
                  f"{escape(str(checkpoint))}")
    table = Table("output", "max abs diff", "ok", title=f"parity with PyTorch on {escape(described)}")
    for name, diff in worst.items():
        table.add_row(name, f"{diff:.3g}", "yes" if diff <= tolerance else "[red]no[/red]")
    console.print(table)
    if images is None:
        console.print("random inputs only: pass --images DIR to check on real images")
    failed = [name for name, diff in worst.items() if diff > tolerance]
    if failed:
        raise GesturekitError(f"{path}: parity check failed: {failed[0]} differs by {worst[failed[0]]:.3g} "
                              f"> tolerance {tolerance:g}")
