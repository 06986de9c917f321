"""``gesturekit prune``: structured channel pruning of a trained detector or classifier (TAO ``prune``)."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.optimize.prune import PruneReport, model_from_state, prune_model, save_pruned_checkpoint


class EqualizationChoice(str, Enum):
    union = "union"
    intersection = "intersection"
    arithmetic_mean = "arithmetic_mean"
    geometric_mean = "geometric_mean"


class CriterionChoice(str, Enum):
    l2 = "l2"
    bn_scale = "bn_scale"


def _human(n: float, unit: str = "") -> str:
    if abs(n) < 1000:
        return f"{n:.0f} {unit}".rstrip()
    for prefix in ("K", "M", "G"):
        n /= 1000
        if abs(n) < 1000 or prefix == "G":
            break
    return f"{n:.2f} {prefix}{unit}"


def report_table(report: PruneReport) -> Table:
    """Before/after params, MACs and ONNX size with the reduction in percent."""
    table = Table(title=f"pruning (threshold {report.settings['threshold']}, {report.settings['equalization']})")
    for column in ("", "before", "after", "reduction"):
        table.add_column(column, justify="left" if not column else "right")
    reduction = report.reduction()
    for key, label, unit in (("params", "params", ""), ("macs", "MACs", ""), ("onnx_bytes", "ONNX size", "B")):
        table.add_row(label, _human(getattr(report.before, key), unit), _human(getattr(report.after, key), unit),
                      f"{reduction[key]:.1f}%")
    pruned = sum(1 for before, after in report.layers.values() if after < before)
    table.caption = f"{pruned} of {len(report.layers)} conv/linear layers narrowed"
    return table


def prune(
    model: Annotated[Path, typer.Option(
        "-m", "--model", help="Checkpoint to prune (best.pt / last.pt of a training run, or a pruned one).",
        show_default=False)],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Pruned checkpoint to write (weights only; reload with load_pruned_checkpoint).",
        show_default=False)],
    threshold: Annotated[float, typer.Option(
        "-pth", "--pth", "--pruning-threshold", min=0.0, max=1.0,
        help="Remove channels whose normalised importance (1 = the layer's most important) is below this.")] = 0.1,
    equalization: Annotated[EqualizationChoice, typer.Option(
        "-eq", "--equalization",
        help="How coupled layers (residual adds, depthwise, merges) combine importances: union keeps a "
             "channel any layer keeps, intersection one all layers keep, or their arithmetic/geometric mean.")
    ] = EqualizationChoice.union,
    criterion: Annotated[CriterionChoice, typer.Option(
        "--criterion", help="Channel importance: l2 norm of the weights, or BatchNorm |gamma| (bn_scale).")
    ] = CriterionChoice.l2,
    min_channels: Annotated[int, typer.Option(
        "--min-channels", min=1, help="Minimum channels a layer keeps.")] = 8,
    granularity: Annotated[int, typer.Option(
        "--granularity", min=1, help="Kept channels are rounded up to a multiple of this.")] = 8,
    report: Annotated[Optional[Path], typer.Option(
        "--report", help="Write the pruning report (sizes, per-layer widths) as JSON. "
                         "(default: OUTPUT with suffix .prune.json)", show_default=False)] = None,
    input_size: Annotated[Optional[int], typer.Option(
        "--input-size", min=32, help="Side of the square input used for tracing and measuring. "
                                     "(default: the model's metadata.input_size)", show_default=False)] = None,
) -> None:
    """Prune the channels of a trained model and report the size before and after.

    Retrain the pruned model to recover its accuracy: set model.pretrained_model_file to the
    pruned checkpoint and load_graph: true in the training spec.
    """
    if output.resolve() == model.resolve():
        raise GesturekitError(f"{output}: the output would overwrite the input checkpoint")
    state = load_checkpoint(model)
    net = model_from_state(state, str(model))
    size = input_size or net.metadata.get("input_size")
    if not isinstance(size, int):
        raise GesturekitError(f"{model}: metadata.input_size is missing; pass --input-size")
    result = prune_model(net, torch.zeros(1, 3, size, size), threshold, equalization.value, criterion.value,
                         min_channels, granularity)
    save_pruned_checkpoint(output, net, result, spec=state.get("spec"))
    report_path = report or output.with_suffix(".prune.json")
    result.save(report_path)
    console = Console()
    console.print(report_table(result))
    console.print(f"pruned checkpoint: {output}\nreport: {report_path}")
