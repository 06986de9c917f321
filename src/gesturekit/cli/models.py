"""``gesturekit models``: list the model zoo and print model cards."""

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
    name: Annotated[str, typer.Argument(metavar="NAME", help="A zoo model name (see gesturekit models list).",
                                        show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the card to this markdown file "
                                                   "instead of printing it.", show_default=False)] = None,
) -> None:
    """Print the model card of a zoo model (markdown, generated from its files)."""
    from gesturekit.models.zoo import model_card

    text = model_card(name)
    if output is None:
        typer.echo(text)
    else:
        atomic_write_text(output, text + "\n")
        typer.echo(f"wrote {output}")
