"""What a workflow has done: per step, the key of its settings and inputs' contents, its status,
outputs and time, in ``OUT/workflow_state.json`` (written atomically after every change).

A key names paths by their roots (``${GESTUREKIT_WORKFLOW_OUT}/packs/a.gkpack``), not where the roots sit,
so an output folder moved, or carried with its data to another machine, resumes instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
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


class StepKeys:
    """The keys of one invocation's steps: one digest of a step's settings (JSON-able) and the contents of its
    input files and folders, each path under a root written from the root's name (the longest root first, e.g.
    ``/home/me/runs/a/packs/p.gkpack`` as ``${GESTUREKIT_WORKFLOW_OUT}/packs/p.gkpack``).

    An input outside the output folder is data the workflow reads and never writes, so its digest is read once
    per invocation (the HaGRID folder feeds five steps of the GPU workflow); inputs in the output folder are read
    each time, as the steps before may have rewritten them."""

    def __init__(self, out: Path, roots: Mapping[str, Path]) -> None:
        self.out = out
        forms = sorted({(form, name) for name, root in roots.items() for form in {str(root), str(root.resolve())}
                        if "/" in form}, key=lambda pair: -len(pair[0]))
        self._patterns = [(re.compile(rf"(?<![\w./-]){re.escape(form)}(?![\w.-])"), name) for form, name in forms]
        self._external: dict[Path, str] = {}

    def portable(self, text: str) -> str:
        """``text`` with every path under a root written from the root's name."""
        for pattern, name in self._patterns:
            text = pattern.sub(lambda _, name=name: name, text)
        return text

    def _digest(self, path: Path) -> str:
        if path.is_relative_to(self.out):
            return content_digest(path)
        if path not in self._external:
            self._external[path] = content_digest(path)
        return self._external[path]

    def key(self, settings: Any, inputs: Iterable[Path]) -> str:
        digest = hashlib.sha256(self.portable(json.dumps(settings, sort_keys=True, default=str)).encode())
        for path in inputs:
            digest.update(f"{self.portable(str(path))}\0{self._digest(path)}\0".encode())
        return digest.hexdigest()


class WorkflowState:
    """The records of one output folder's steps, keyed by step name (``stage/target``)."""

    def __init__(self, out: Path) -> None:
        self.out = out
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
        self.steps[name] = {"status": "done", "key": key, "outputs": [self._name(p) for p in outputs],
                            "seconds": round(seconds, 2)}
        self._save()

    def _name(self, path: Path) -> str:
        """An output as a path in the output folder (the record stays true when the folder moves)."""
        return path.relative_to(self.out).as_posix() if path.is_relative_to(self.out) else str(path)

    def _save(self) -> None:
        atomic_write_json(self.path, {"steps": self.steps})
