"""The ``gesturekit`` command: one verb group per stage of the workflow."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from gesturekit.cli.signals import exit_at_once_on_signals
from gesturekit.errors import GesturekitError, missing_extra, save_traceback

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
    from gesturekit.cli import data, evaluate, export, infer, models, pack, prune, serve, train, workflow

    pack.register(data.app)
    app.add_typer(data.app, name="data", help="Convert, validate, inspect and pack datasets (KITTI layout).")
    app.add_typer(train.app, name="train")
    app.add_typer(evaluate.app, name="evaluate")
    app.command("prune")(prune.prune)
    app.add_typer(serve.export_group(export.export), name="export")
    app.command("serve")(serve.serve)
    app.command("infer")(infer.infer)
    app.add_typer(models.app, name="models")
    app.add_typer(workflow.app, name="workflow")


_register()


def _fail(message: str, code: int) -> NoReturn:
    for line in message.splitlines() or [""]:
        typer.secho(f"error: {line}", err=True, fg="red")
    sys.exit(code)


def main() -> None:
    """Entry point and error boundary: no traceback reaches the user.

    Typer reports bad options itself (exit 2); a known error is its own line(s) (exit 1, or 2 for
    a command that cannot run as given); an unexpected one is one line naming the file where its
    traceback was saved (exit 1).
    """
    try:
        app()
    except GesturekitError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:  # a signal after the run closed its outputs: nothing is lost; exit as Ctrl-C does
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the boundary: anything else is a bug to report
        if extra := missing_extra(exc):
            _fail(f"gesturekit {sys.argv[1] if len(sys.argv) > 1 else ''} needs: pip install 'gesturekit[{extra}]'", 1)
        try:
            saved = f"traceback saved to {save_traceback('gesturekit ' + ' '.join(sys.argv[1:]))}"
        except OSError as save_error:
            saved = f"traceback not saved: {save_error}"
        _fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} ({saved})", 1)
    finally:
        exit_at_once_on_signals()


if __name__ == "__main__":
    main()
