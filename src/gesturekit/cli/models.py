"""``gesturekit models``: list the model zoo, print model cards, package and average models."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gesturekit.io import atomic_write_text

app = typer.Typer(
    help=(
        "The model zoo: trained hand detectors and gesture classifiers shipped with gesturekit. "
        "Use a zoo name wherever a model is expected (gesturekit infer, gesturekit export, app configs)."
    ),
    no_args_is_help=True,
)


@app.command("list")
def list_models() -> None:
    """Print the zoo models: task, architecture, input size, classes and main evaluation metric."""
    from gesturekit.models.zoo import list_zoo  # lazy: keeps `gesturekit --help` free of torch

    entries = list_zoo()
    console = Console(highlight=False, soft_wrap=True)
    if not entries:
        console.print("the model zoo is empty")
        return
    table = Table("name", "task", "architecture", "input", "classes", "metric")
    for e in entries:
        arch = e.arch + (f" ({e.backbone})" if e.backbone else "")
        metric = f"{e.headline[0]} {e.headline[1]:.4f}" if e.headline else "-"
        table.add_row(e.name, e.task, arch, str(e.input_size), escape(", ".join(e.classes)), escape(metric))
    console.print(table)


@app.command()
def card(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A zoo model name (see gesturekit models list) or a "
                                        "model directory (e.g. from gesturekit models package).",
                                        show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the card to this markdown file "
                                                   "instead of printing it.", show_default=False)] = None,
) -> None:
    """Print the model card of a zoo model or model directory (markdown, generated from its files)."""
    from gesturekit.models.zoo import model_card

    text = model_card(name)
    if output is None:
        typer.echo(text)
    else:
        atomic_write_text(output, text + "\n")
        typer.echo(f"wrote {output}")


@app.command()
def package(
    checkpoint: Annotated[Path, typer.Argument(help="A training checkpoint (results/best.pt or last.pt).",
                                               show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The zoo directory to write "
                                         "(e.g. src/gesturekit/models/zoo/my-detector).", show_default=False)],
    spec: Annotated[Optional[Path], typer.Option("--spec", "-e", help="The training spec, copied as spec.yaml.",
                                                 show_default=False)] = None,
    summary: Annotated[Optional[Path], typer.Option(help="train_summary.json of the run (default: next to the "
                                                    "checkpoint, when there).", show_default=False)] = None,
) -> None:
    """Turn a training run into a zoo entry: model.pt (weights + metadata, FP16), model.onnx, spec, summary."""
    import json

    from gesturekit.export.package import package_model

    summary = summary or checkpoint.with_name("train_summary.json")
    training = json.loads(summary.read_text()) if summary.is_file() else None
    parity = package_model(checkpoint, output, spec, training)
    typer.echo(f"wrote {output} (ONNX parity: " + ", ".join(f"{k} {v:.2g}" for k, v in parity.items()) + ")")


@app.command()
def average(
    checkpoints: Annotated[list[Path], typer.Argument(help="Two or more checkpoints of one architecture, e.g. a "
                                                      "fine-tuned run's last.pt and the model it started from.",
                                                      show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The averaged checkpoint to write.",
                                         show_default=False)],
    weight: Annotated[Optional[list[float]], typer.Option(
        "--weight", "-w", help="One per checkpoint, in order (default: equal); normalised to sum 1.",
        show_default=False)] = None,
) -> None:
    """Average the weights of fine-tuned models (a model soup); the result packages, exports and evaluates
    like any checkpoint."""
    from gesturekit.engine.checkpoint import save_checkpoint
    from gesturekit.optimize.average import average_checkpoints

    state = average_checkpoints(checkpoints, weight)
    save_checkpoint(output, state)
    shares = state["metadata"]["weight_average"]["weights"]
    typer.echo(f"wrote {output}: " + " + ".join(f"{s:g} x {p}" for s, p in zip(shares, checkpoints)))
