"""One run's sources spread over worker processes: one per GPU with ``--device cuda``.

A worker is a fresh Python process (not a fork of a parent that may hold threads) started with
``CUDA_VISIBLE_DEVICES`` naming its GPU, so it is set before anything there imports torch. It opens
its share of the sources, loads the models and runs them through the app (``run_app``). A source stays
whole in one process, with its tracker, and keeps its number out of the run's total in the output names
(``preds.3.jsonl``) and FPS lines, so every output is the one-process run's.

Each worker has its own process group: a Ctrl-C at the terminal reaches the parent alone, which passes
every SIGINT and SIGTERM on to the workers through a pipe. A worker so gets each signal once (the first:
finish what was decoded; the second: stop at once, as in one process), and only once its app can take it;
a worker whose parent is gone stops as on SIGTERM. A worker's error or death is one line naming its
sources; the other workers run to their end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from gesturekit.config.app import AppConfig
from gesturekit.errors import GesturekitError, UsageError, missing_extra, save_traceback
from gesturekit.pipeline.app import ABORT_GRACE_S, Interrupted, SourceReport, open_sources, run_app
from gesturekit.pipeline.recognizer import GestureRecognizer

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_ENTRY = "import sys; from gesturekit.pipeline.processes import serve; serve(int(sys.argv[1]), int(sys.argv[2]))"


class WorkersFailed(GesturekitError):
    """Worker processes failed, one line each; the other workers' sources ran to their end.

    Attributes:
        reports: those sources' reports, in source order.
    """

    def __init__(self, lines: Sequence[str], reports: list[SourceReport]) -> None:
        super().__init__("\n".join(lines))
        self.reports = reports


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as a worker's ``CUDA_VISIBLE_DEVICES`` names them: the entries of
    ours (up to the first invalid one, where CUDA stops), else the indices ``nvidia-smi -L`` lists; none
    without a GPU. Torch is not imported: counting GPUs costs the CPU path nothing."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        names = []
        for name in (n.strip() for n in listed.split(",")):
            if not name or name.startswith("-"):
                break
            names.append(name)
        return names
    try:
        found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(line for line in found.splitlines() if line.startswith("GPU "))]


def process_count(config: AppConfig, asked: int | None = None) -> int:
    """How many worker processes run the config's sources: ``asked``, else one per visible GPU on cuda
    with several sources, else 1; never more than the sources.

    Raises:
        UsageError: several processes asked with the preview, whose one server shows every source.
    """
    preview = config.sinks.preview_port is not None
    if asked is None:
        several = len(config.sources) > 1 and config.primary.device == "cuda" and not preview
        asked = len(visible_gpus()) if several else 1
    if asked > 1 and preview:
        raise UsageError("--processes: the preview (--preview-port) runs in one process; give --processes 1")
    return max(1, min(asked, len(config.sources)))


def split_sources(count: int, processes: int) -> list[list[int]]:
    """The source numbers of each process, dealt in turn (``0, 2, 4 | 1, 3``): each process gets as many
    as the next, give or take one, and none gets none."""
    processes = max(1, min(processes, count))
    return [list(range(k, count, processes)) for k in range(processes)]


@dataclass(frozen=True)
class _Job:
    """What a worker runs: the run's config (every source) and the numbers of its own sources."""

    config: AppConfig
    source_ids: list[int]
    url: str | None


def run_processes(config: AppConfig, processes: int, *, url: str | None = None,
                  emit: Callable[[str], None] = print) -> list[SourceReport]:
    """Run the config's sources split over ``processes`` worker processes (a GPU each on cuda) into the
    config's sinks, as ``run_app`` runs them in one; a report per source, in source order.

    Run from the main thread, it passes SIGINT and SIGTERM on to the workers until it returns.

    Args:
        url: the server of a serving backend.
        emit: where each worker's lines (which process runs which sources, FPS, notes) go.

    Raises:
        WorkersFailed: a worker failed or died (after every other one has finished).
        Interrupted: SIGINT or SIGTERM stopped the run; every worker's outputs hold every frame it processed.
    """
    groups = split_sources(len(config.sources), processes)
    gpus = visible_gpus() if config.primary.device == "cuda" else []
    workers: list[_Worker] = []
    signals: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        signals.append(signum)
        for worker in workers:
            worker.catch_up(signals)
        if len(signals) > 1:  # a third one is not caught, as in one process
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_DFL)

    on_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS} if on_main else {}
    try:
        for k, ids in enumerate(groups):
            if signals:  # stopped before every worker started: the rest never start
                break
            gpu = gpus[k % len(gpus)] if gpus else None
            where = f" on GPU {gpu}" if gpu is not None else ""
            name = "sources " if len(ids) > 1 else "source "
            emit(f"process {k + 1} of {len(groups)}{where}: {name}{', '.join(map(str, ids))}")
            workers.append(_Worker(_Job(config, ids, url), gpu))
            workers[-1].catch_up(signals)  # a signal while it started
        while live := [w.results for w in workers if not w.ended]:
            for results in wait(live):
                next(w for w in workers if w.results is results).receive(emit)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:
            worker.close()  # a worker still running (the parent failed) sees its parent gone: it stops
    return _outcome(config, workers, signals)


def _outcome(config: AppConfig, workers: Sequence[_Worker], signals: Sequence[int]) -> list[SourceReport]:
    """The reports of every worker, in source order; raise as one process would have."""
    reports: dict[int, SourceReport] = {}
    failures: list[str] = []
    stopped = list(signals[:1])
    for worker in workers:
        ids = worker.job.source_ids
        label = f"the process of source{'s' if len(ids) > 1 else ''} " + ", ".join(
            f"{i} ({config.sources[i]})" for i in ids)
        kind, *rest = worker.outcome or ("died", worker.death())
        if kind == "done":
            reports.update(zip(ids, rest[0]))
        elif kind == "interrupted":
            stopped.append(rest[0])
            reports.update(zip(ids, rest[1]))
        elif kind == "failed":
            failures += [f"{label} failed: {line}" for line in str(rest[0]).splitlines()]
        else:
            failures.append(f"{label} {rest[0]}")
    ordered = [reports[i] for i in sorted(reports)]
    if failures:
        raise WorkersFailed(failures, ordered)
    if stopped:
        raise Interrupted(stopped[0], ordered, [])
    return ordered


class _Worker:
    """A worker process seen from the parent: its job, a pipe each way, and what it sent back."""

    def __init__(self, job: _Job, gpu: str | None) -> None:
        self.job = job
        commands_in, commands_out = os.pipe()
        results_in, results_out = os.pipe()
        env = os.environ if gpu is None else {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(commands_in), str(results_out)],
                pass_fds=(commands_in, results_out), env=env, stdin=subprocess.DEVNULL, process_group=0)
        except BaseException:
            for fd in (commands_out, results_in):
                os.close(fd)
            raise
        finally:
            for fd in (commands_in, results_out):
                os.close(fd)
        self.commands = Connection(commands_out, readable=False)
        self.results = Connection(results_in, writable=False)
        try:
            self.commands.send(job)
        except OSError:  # it died at once: the end of its pipe says so
            pass
        self.outcome: tuple[Any, ...] | None = None
        self.ended = False
        self.passed = 0  # signals passed on

    def catch_up(self, signals: Sequence[int]) -> None:
        """Pass on the ``signals`` the worker has not had yet (none reach it once it is gone)."""
        while self.passed < len(signals):
            self.passed += 1
            try:
                self.commands.send(signals[self.passed - 1])
            except OSError:
                pass

    def receive(self, emit: Callable[[str], None]) -> None:
        """Take the worker's next message: a line to emit, its outcome, or the end of the pipe (it exited)."""
        try:
            message = self.results.recv()
        except (EOFError, OSError):
            self.ended = True
            try:
                self.process.wait(ABORT_GRACE_S)
            except subprocess.TimeoutExpired:  # its outputs are closed: it hangs on its way out
                self.process.kill()
                self.process.wait()
            return
        if message[0] == "line":
            emit(message[1])
        else:
            self.outcome = message

    def death(self) -> str:
        """How a worker that sent no outcome ended."""
        code = self.process.poll()
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return f"ended without a result ({how}); its sources' outputs are not in place"

    def close(self) -> None:
        self.commands.close()
        self.results.close()


def serve(commands_fd: int, results_fd: int) -> None:
    """A worker process's body: take the job from the parent, run it, send back its lines and its outcome
    (``done``, ``interrupted`` or ``failed``)."""
    commands, results = Connection(commands_fd, writable=False), Connection(results_fd, readable=False)
    job: _Job = commands.recv()
    pending: list[int] = []  # signals that came before the app could take them
    for sig in SIGNALS:
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    threading.Thread(target=_relay, args=(commands,), name="relay", daemon=True).start()
    lock = threading.Lock()  # the app's threads emit lines too

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            try:
                results.send(message)
            except OSError:  # the parent is gone: no one reads, and the relay has stopped the run
                pass

    try:
        outcome: tuple[Any, ...] = ("done", _work(job, pending, lambda line: send(("line", line))))
    except Interrupted as stop:
        outcome = ("interrupted", stop.signum, stop.reports)
    except GesturekitError as exc:
        outcome = ("failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - the worker's error boundary, as cli.main is the parent's
        outcome = ("failed", _unexpected(exc, job.source_ids))
    send(outcome)


def _unexpected(exc: Exception, source_ids: list[int]) -> str:
    """The one line of an error no code of ours raised: the extra to install, or where its traceback went."""
    if extra := missing_extra(exc):
        return f"gesturekit infer needs: pip install 'gesturekit[{extra}]'"
    first = str(exc).splitlines()[0] if str(exc) else ""
    try:
        saved = f"traceback saved to {save_traceback(f'gesturekit infer, the process of sources {source_ids}')}"
    except OSError as save_error:
        saved = f"traceback not saved: {save_error}"
    return f"unexpected {type(exc).__name__}: {first} ({saved})"


def _relay(commands: Connection) -> None:
    """Raise here each signal the parent passes on; SIGTERM once the parent is gone (its pipe closed)."""
    while True:
        try:
            signum = commands.recv()
        except (EOFError, OSError):
            os.kill(os.getpid(), signal.SIGTERM)
            return
        os.kill(os.getpid(), signum)


def _work(job: _Job, pending: Sequence[int], emit: Callable[[str], None]) -> list[SourceReport]:
    """Open the job's sources, load the models and run them, each source numbered as in the whole run."""
    config = job.config.model_copy(update={"sources": [job.config.sources[i] for i in job.source_ids]})
    opened = open_sources(config)
    try:
        recognizer = GestureRecognizer(config=config, url=job.url)
        if pending:  # a signal while the models loaded: nothing is written
            raise Interrupted(pending[0], [], [])
    except BaseException:
        for source in opened:
            source.close()
        raise
    return run_app(recognizer.config, recognizer.cascade, sources=opened, emit=emit, numbers=job.source_ids,
                   total=len(job.config.sources))
