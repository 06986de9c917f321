"""Training logs: JSON lines + TensorBoard scalars per epoch, and a rich progress bar per iteration.

Only the main rank writes; the other ranks get no-op objects from the same constructors.
"""

from __future__ import annotations

import warnings

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from gesturekit.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


class MetricLogger:
    """Appends one JSON object per epoch to ``results_dir/metrics.jsonl`` and mirrors its numbers
    to TensorBoard (``results_dir/tensorboard``, tag ``train/loss/total``-style, step = epoch).

    Args:
        results_dir: run directory.
        enabled: False on non-main ranks (nothing is written).
        resume_epoch: completed epochs of the checkpoint a run resumes from; JSONL records
            and TensorBoard events of later epochs (written before a crash) are dropped.
        tensorboard: also write TensorBoard events.
    """

    def __init__(self, results_dir: str | Path, enabled: bool = True, resume_epoch: int = 0,
                 tensorboard: bool = True) -> None:
        self.path = Path(results_dir) / METRICS_FILE
        self.enabled = enabled
        self._writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(resume_epoch)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed: metrics go to metrics.jsonl only", stacklevel=2)
                return
            self._writer = SummaryWriter(
                str(self.path.parent / TENSORBOARD_DIR), purge_step=resume_epoch + 1 if resume_epoch else None,
            )

    def _truncate(self, resume_epoch: int) -> None:
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(record, dict) and int(record.get("epoch", 0)) <= resume_epoch:
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def log(self, record: Mapping[str, Any]) -> None:
        """Write one epoch record (must contain ``epoch``; nested dicts become ``a/b`` tags)."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            step = int(record["epoch"])
            for tag, value in _flatten({k: v for k, v in record.items() if k != "epoch"}).items():
                self._writer.add_scalar(tag, value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ProgressBar:
    """A per-epoch rich progress bar (loss, lr, images/s, ETA) plus main-rank messages.

    The bar is drawn only on the main rank and when stdout is a terminal; :meth:`print`
    still writes plain lines on the main rank otherwise.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.is_main = enabled
        self.console = Console()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[ips]:.0f} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not (enabled and sys.stdout.isatty()),
        )
        self._task: TaskID | None = None

    def start(self, description: str, total: int) -> None:
        """Open a bar of ``total`` iterations (closing the previous one)."""
        self.stop()
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, loss=float("nan"), lr=0.0, ips=0.0)

    def update(self, loss: float, lr: float, images_per_s: float) -> None:
        """Advance one iteration."""
        if self._task is not None:
            self._progress.update(self._task, advance=1, loss=loss, lr=lr, ips=images_per_s)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._progress.stop()

    def print(self, message: str) -> None:
        """A line on the main rank (above the bar when one is drawn)."""
        if self.is_main:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
