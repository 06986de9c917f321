"""The ``gesturekit`` console script: quiet on Ctrl-C from its first instant.

Importing the CLI (typer, rich and every verb's module) takes a few hundred milliseconds; a Ctrl-C in
that window would land on Python's default handler outside the CLI's error boundary and print a
traceback. Until the imports are done a signal ends the process at once (nothing has been written
yet); then Python's own handlers are back, so each command handles Ctrl-C as it always does.
"""

from __future__ import annotations

import signal


def main() -> None:
    from gesturekit.cli.signals import exit_at_once_on_signals

    exit_at_once_on_signals()
    from gesturekit.cli.main import main as run

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    run()
