"""What a signal does once a command's outputs are closed (or before they exist)."""

from __future__ import annotations

import os
import signal
import sys
import threading


def exit_at_once_on_signals() -> None:
    """From here on a SIGINT or SIGTERM ends the process at once with 128 + signal and no traceback.

    The CLI installs this before the app runs (the app puts it back when it returns, so no signal
    lands on Python's default handler between the run and the exit) and again when a command ends
    (a signal in the interpreter's shutdown would otherwise print a traceback).
    """
    def leave(signum: int, _frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, leave)
