"""``gesturekit train detector|classifier -e SPEC -r RESULTS_DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gesturekit.config.base import load_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec

app = typer.Typer(
    help=(
        "Train a model from a YAML spec. Re-running the same command resumes from RESULTS_DIR/last.pt. "
        "For several GPUs: torchrun --nproc_per_node N -m gesturekit.cli.main train ..."
    ),
    no_args_is_help=True,
)

SpecOption = Annotated[Path, typer.Option("--spec", "-e", help="YAML spec (see `gesturekit/specs/*.yaml`).")]
ResultsOption = Annotated[Path, typer.Option("--results", "-r", help="Results directory (checkpoints, logs).")]
DeviceOption = Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N (default: cuda if available).")]
OverrideArg = Annotated[Optional[list[str]], typer.Argument(help="Spec overrides, e.g. training.epochs=10.")]


def _report(summary: dict, results: Path) -> None:
    best = f"best {summary['metric_key']} {summary['best_metric']:.4f} (epoch {summary['best_epoch']}), " \
        if summary.get("best_metric") is not None else ""
    typer.echo(f"{best}{summary['images_seen']} images in {summary['wall_time_s']:.0f} s -> {results}")


@app.command()
def detector(spec: SpecOption, results: ResultsOption, overrides: OverrideArg = None,
             device: DeviceOption = None) -> None:
    """Train the hand detector (DetectNet_v2-style) described by the spec."""
    from gesturekit.training.detector import train_detector

    _report(train_detector(load_spec(spec, DetectorSpec, overrides), results, device), results)


@app.command()
def classifier(spec: SpecOption, results: ResultsOption, overrides: OverrideArg = None,
               device: DeviceOption = None) -> None:
    """Train the gesture classifier (GestureNet-compatible) described by the spec."""
    from gesturekit.training.classifier import train_classifier

    _report(train_classifier(load_spec(spec, ClassifierSpec, overrides), results, device), results)
