"""The ``gesturekit`` command: one verb group per stage of the workflow."""

from __future__ import annotations

import sys

import typer

from gesturekit.errors import GesturekitError

app = typer.Typer(
    name="gesturekit",
    help=(
        "Open hand-gesture recognition: convert data, train a hand detector and a gesture "
        "classifier, evaluate, prune and export them, and run the detector -> classifier cascade "
        "on images, videos and streams."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from gesturekit.cli import data, evaluate, export, infer, models, pack, prune, serve, train

    pack.register(data.app)
    app.add_typer(data.app, name="data", help="Convert, validate, inspect and pack datasets (KITTI layout).")
    app.add_typer(train.app, name="train")
    app.add_typer(evaluate.app, name="evaluate")
    app.command("prune")(prune.prune)
    app.add_typer(serve.export_group(export.export), name="export")
    app.command("serve")(serve.serve)
    app.command("infer")(infer.infer)
    app.add_typer(models.app, name="models")


_register()


def main() -> None:
    """Entry point: user errors print one line and exit 1, never a traceback."""
    try:
        app()
    except GesturekitError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(1)


if __name__ == "__main__":
    main()
