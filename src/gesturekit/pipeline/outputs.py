"""The app's output paths, checked before any model loads.

A run that could not write its results, or would write them over one of its inputs (a video, an
image, the config, a model file; symlinks resolved) or over another of its outputs, stops before
it starts, with one line per problem, instead of after the models loaded or the video ran.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gesturekit.config.app import AppConfig
from gesturekit.errors import UsageError
from gesturekit.pipeline.sinks import output_path
from gesturekit.pipeline.sources import ImageSource, Source


def planned_outputs(config: AppConfig, num_sources: int) -> list[tuple[str, Path]]:
    """``(option, path)`` of every file the config's sinks will write, numbered per source."""
    named = [("--out-json", config.sinks.json_path), ("--out-video", config.sinks.video)]
    return [(option, output_path(path, i, num_sources)) for option, path in named if path is not None
            for i in range(num_sources)]


def input_paths(config: AppConfig, sources: Sequence[Source], config_file: Path | None = None) -> list[Path]:
    """Every local file the run reads: source files and images, the config, model files."""
    paths = [] if config_file is None else [config_file]
    for source in sources:
        paths += source.paths if isinstance(source, ImageSource) else [Path(source.uri)]
    models = (config.primary.detector, config.primary.verifier, config.secondary.classifier)
    paths += [Path(m) for m in models if m is not None]
    return [p for p in paths if p.exists()]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _writable_folder(path: Path) -> str | None:
    """Why files cannot be created in the folder ``path`` will be in (``None`` when they can)."""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".gesturekit-probe-")
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_outputs(outputs: Sequence[tuple[str, Path]], inputs: Sequence[Path]) -> None:
    """Raise one :class:`UsageError` line per output that is a folder, cannot be written, is an
    input or is another output.

    Args:
        outputs: ``(option, path)`` pairs (:func:`planned_outputs`).
        inputs: the files the run reads (:func:`input_paths`).
    """
    reads = {_real(p): p for p in inputs}
    written: dict[Path, str] = {}
    problems = []
    for option, path in outputs:
        real = _real(path)
        if real in reads:
            problems.append(f"{option} {path}: is an input ({reads[real]}); give another path")
        elif real in written:
            problems.append(f"{option} {path}: the same file as {written[real]}")
        elif path.is_dir():
            problems.append(f"{option} {path}: is a folder; give a file path")
        elif (why := _writable_folder(real)) is not None:
            problems.append(f"{option} {path}: {why}")
        written.setdefault(real, f"{option} {path}")
    if problems:
        raise UsageError("\n".join(problems))
