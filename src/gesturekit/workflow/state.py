"""What a workflow has done: per step, the key of its settings and inputs' contents, its status,
outputs and time, in ``OUT/workflow_state.json`` (written atomically after every change)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_json

STATE_FILE = "workflow_state.json"
Status = Literal["running", "done"]
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and bytes, in name order);
    ``missing`` for a path that does not exist."""
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\0".encode())
    return digest.hexdigest()


def step_key(settings: Any, inputs: Iterable[Path]) -> str:
    """One digest of a step's settings (JSON-able) and the contents of its input files and folders."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        digest.update(f"{path}\0{content_digest(path)}\0".encode())
    return digest.hexdigest()


class WorkflowState:
    """The records of one output folder's steps, keyed by step name (``stage/target``)."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.steps: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.steps = dict(json.loads(self.path.read_text())["steps"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise GesturekitError(f"{self.path}: not a workflow state file; remove it to start over") from None

    def record(self, name: str) -> dict[str, Any] | None:
        return self.steps.get(name)

    def is_done(self, name: str, key: str, outputs: Iterable[Path]) -> bool:
        """The step finished with this key and its outputs are still there."""
        rec = self.steps.get(name)
        return bool(rec and rec["status"] == "done" and rec["key"] == key and all(p.exists() for p in outputs))

    def interrupted(self, name: str, key: str) -> bool:
        """The step started with this key and did not finish (killed): its run may resume."""
        rec = self.steps.get(name)
        return bool(rec and rec["status"] == "running" and rec["key"] == key)

    def start(self, name: str, key: str) -> None:
        self.steps[name] = {"status": "running", "key": key}
        self._save()

    def finish(self, name: str, key: str, outputs: list[Path], seconds: float) -> None:
        self.steps[name] = {"status": "done", "key": key, "outputs": [str(p) for p in outputs],
                            "seconds": round(seconds, 2)}
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.path, {"steps": self.steps})
