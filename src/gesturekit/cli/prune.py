"""``gesturekit prune``: structured channel pruning of a trained detector or classifier (TAO ``prune``),
or, with ``--target-drop``, a search for the largest threshold that stays within an accuracy budget."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from gesturekit.errors import GesturekitError

if TYPE_CHECKING:  # the heavy modules (torch, torch-pruning) load when a command runs
    from gesturekit.optimize.prune import ChannelSelection, PruneReport
    from gesturekit.training.search import SearchResult


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


def search_table(result: SearchResult) -> Table:
    """Threshold, params, MACs, metric and drop of every tried threshold; the chosen one marked."""
    table = Table(title=f"threshold search ({result.metric_name}, target drop {result.target_drop:g} points)")
    for column in ("threshold", "params", "MACs", result.metric_name, "drop", ""):
        table.add_column(column, justify="right")
    table.add_row("unpruned", _human(result.baseline_params), _human(result.baseline_macs),
                  f"{result.baseline_metric:.4f}", "", "")
    for point in result.points:
        mark = "chosen" if point is result.chosen else ("ok" if point.within_target else "over")
        table.add_row(f"{point.threshold:g}", _human(point.params), _human(point.macs), f"{point.metric:.4f}",
                      f"{point.drop:+.2f}", mark)
    return table


def _parse_thresholds(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise GesturekitError(f"--thresholds: expected comma-separated numbers, got {text!r}") from None


def _search(model: Path, output: Path, spec_path: Path, target_drop: float, thresholds: str | None,
            retrain_epochs: int, work_dir: Path | None, selection: ChannelSelection, device: str | None) -> None:
    from gesturekit.config.base import load_spec
    from gesturekit.config.specs import ClassifierSpec, DetectorSpec
    from gesturekit.engine.checkpoint import load_checkpoint
    from gesturekit.evaluation.spec_metric import spec_metric
    from gesturekit.training.search import save_chosen, search_threshold

    task = (load_checkpoint(model).get("metadata") or {}).get("task")
    spec = load_spec(spec_path, ClassifierSpec if task == "classification" else DetectorSpec)
    work = work_dir or output.with_name(f"{output.stem}_search")
    result = search_threshold(
        model, spec, spec_metric(spec), target_drop, work_dir=work,
        thresholds=_parse_thresholds(thresholds) if thresholds else None, retrain_epochs=retrain_epochs,
        selection=selection, device=device)
    console = Console()
    console.print(search_table(result))
    console.print(f"trade-off curve: {result.curve_json}, {result.curve_png}")
    save_chosen(result, output)
    console.print(f"pruned and retrained checkpoint (threshold {result.chosen.threshold:g}): {output}")


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
    target_drop: Annotated[Optional[float], typer.Option(
        "--target-drop", min=0.0,
        help="Search mode: find the largest threshold whose pruned and briefly retrained model loses at most "
             "this many points of AP@0.5 (detector) or macro-F1 (classifier); needs --spec.",
        show_default=False)] = None,
    spec: Annotated[Optional[Path], typer.Option(
        "-e", "--spec", help="Search mode: the training spec (data, retraining schedule, evaluation datasets).",
        show_default=False)] = None,
    thresholds: Annotated[Optional[str], typer.Option(
        "--thresholds", help="Search mode: comma-separated thresholds to try, e.g. 0.1,0.2,0.4. "
                             "(default: 0.05,0.1,0.2,...,0.7)", show_default=False)] = None,
    retrain_epochs: Annotated[int, typer.Option(
        "--retrain-epochs", min=1, help="Search mode: retraining epochs after each pruning.")] = 1,
    work_dir: Annotated[Optional[Path], typer.Option(
        "--work-dir", help="Search mode: runs and the trade-off curve (search.json, search.png). "
                           "(default: OUTPUT's folder / <output name>_search)", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="Search mode: training device, cpu, cuda or cuda:N (default: cuda if available).",
        show_default=False)] = None,
) -> None:
    """Prune the channels of a trained model and report the size before and after.

    Retrain the pruned model to recover its accuracy: set model.pretrained_model_file to the
    pruned checkpoint and load_graph: true in the training spec. With --target-drop, the threshold
    is searched instead: each candidate is pruned, retrained and evaluated, and the chosen
    retrained model is written to OUTPUT.
    """
    if output.resolve() == model.resolve():
        raise GesturekitError(f"{output}: the output would overwrite the input checkpoint")
    from gesturekit.optimize.prune import ChannelSelection

    selection = ChannelSelection(equalization.value, criterion.value, min_channels, granularity)
    if target_drop is not None:
        if spec is None:
            raise GesturekitError("--target-drop needs the training spec: pass -e/--spec SPEC")
        _search(model, output, spec, target_drop, thresholds, retrain_epochs, work_dir, selection, device)
        return
    import torch

    from gesturekit.engine.checkpoint import load_checkpoint
    from gesturekit.optimize.prune import prune_model, save_pruned_checkpoint
    from gesturekit.optimize.restore import model_from_state

    state = load_checkpoint(model)
    net = model_from_state(state, str(model))
    size = input_size or net.metadata.get("input_size")
    if not isinstance(size, int):
        raise GesturekitError(f"{model}: metadata.input_size is missing; pass --input-size")
    result = prune_model(net, torch.zeros(1, 3, size, size), threshold, selection)
    save_pruned_checkpoint(output, net, result, spec=state.get("spec"))
    report_path = report or output.with_suffix(".prune.json")
    result.save(report_path)
    console = Console()
    console.print(report_table(result))
    console.print(f"pruned checkpoint: {output}\nreport: {report_path}")
