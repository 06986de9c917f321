"""Atomic file writes: a file is either the old one or the complete new one, never half written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a temporary file next to ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _fsync_and_publish(tmp: Path, dest: Path) -> Path:
    """Give ``tmp`` the umask's permissions, flush it to disk and rename it to ``dest``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    return dest


class StagedFile:
    """An output built over a whole run, written under a hidden name next to ``path``.

    Only :meth:`commit` puts it at ``path``, so an existing file there is replaced by a complete
    new one or not at all; a failed run can keep what it wrote beside it (:meth:`keep_partial`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.",
                                   suffix=f".partial{self.path.suffix}")
        os.close(fd)
        self.tmp = Path(tmp)

    @property
    def partial_path(self) -> Path:
        """Where :meth:`keep_partial` puts a failed run's file: ``<stem>.partial<suffix>``."""
        return self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")

    def commit(self) -> Path:
        """Rename the finished file into place."""
        return _fsync_and_publish(self.tmp, self.path)

    def keep_partial(self) -> Path:
        """Rename the unfinished file to :attr:`partial_path`, leaving ``path`` untouched."""
        return _fsync_and_publish(self.tmp, self.partial_path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
