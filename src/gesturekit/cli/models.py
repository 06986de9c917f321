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


LIST_COLUMNS = ("name", "task", "metric", "input", "evaluated on", "classes", "architecture")
"""``models list``'s columns by importance: where the terminal is too narrow the last ones give way first."""


def _zoo_table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> Table:
    table = Table()
    for column in columns:
        table.add_column(column, no_wrap=column == "name")
    for row in rows:
        table.add_row(*(escape(row[c]) for c in columns))
    return table


def _headline_cells(headline: tuple[str, float] | None) -> dict[str, str]:
    """``metric`` and ``evaluated on`` of an eval.json headline such as ``("datasets.egohands_test.ap50", 0.95)``."""
    if headline is None:
        return {"metric": "-", "evaluated on": "-"}
    *where, metric = headline[0].removeprefix("datasets.").split(".")
    return {"metric": f"{metric} {headline[1]:.4f}", "evaluated on": ".".join(where) or "-"}


@app.command("list")
def list_models() -> None:
    """Print the zoo models: task, main evaluation metric and its test set, input size, classes and architecture."""
    from gesturekit.models.zoo import list_zoo  # lazy: keeps `gesturekit --help` free of torch

    entries = list_zoo()
    console = Console(highlight=False)
    if not entries:
        console.print("the model zoo is empty")
        return
    rows = [{"name": e.name, "task": e.task, "input": str(e.input_size), "classes": ", ".join(e.classes),
             "architecture": e.arch + (f" ({e.backbone})" if e.backbone else ""), **_headline_cells(e.headline)}
            for e in entries]
    # the most columns that fit unwrapped; with only name and task left, the task wraps rather than the name
    unbounded = console.options.update_width(10_000)
    count = next((n for n in range(len(LIST_COLUMNS), 2, -1)
                  if console.measure(_zoo_table(rows, LIST_COLUMNS[:n]), options=unbounded).maximum <= console.width),
                 2)
    console.print(_zoo_table(rows, LIST_COLUMNS[:count]))


@app.command()
def card(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A zoo model name (see gesturekit models list) or a "
                                        "model directory (from gesturekit models package or a workflow's models/).",
                                        show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the card to this file instead of "
                                                   "printing it.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The card as JSON (each section names its source file) "
                                          "instead of Markdown.")] = False,
    measure: Annotated[bool, typer.Option("--measure", help="First measure the model's throughput (images/s at "
                                          "batch 1 and 8, ONNX Runtime on this machine's CPU) and store it in the "
                                          "model's throughput.json.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="--measure: ONNX Runtime threads (default: the "
                                                   "CPU count, at most 8).", show_default=False)] = None,
) -> None:
    """Print the model card of a zoo model or model directory, generated from its files alone: model,
    training, evaluation (a row per evaluation set), throughput on the named machine, data licences."""
    import json

    from gesturekit.evaluation.cards import build_card, card_markdown, model_file
    from gesturekit.evaluation.throughput import measure_throughput, store_throughput
    from gesturekit.models.zoo import model_dir

    path = model_dir(name)
    if measure:
        store_throughput(path, measure_throughput(model_file(path), [1, 8], threads=threads))
    built = build_card(path)
    text = json.dumps(built, indent=2) if as_json else card_markdown(built)
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
