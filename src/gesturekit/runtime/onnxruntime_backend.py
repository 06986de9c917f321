"""ONNX Runtime backend: runs a gesturekit ``.onnx`` file, metadata read from the file."""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import metadata_from_props

MAX_DEFAULT_THREADS = 8
"""Default intra-op threads: the CPU count, capped (more threads rarely help a small network)."""


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_THREADS))


def cache_dir() -> Path | None:
    """Where optimized graphs are kept: ``$GESTUREKIT_CACHE_DIR`` (empty: nowhere), else
    ``$XDG_CACHE_HOME/gesturekit``, else ``~/.cache/gesturekit``."""
    if "GESTUREKIT_CACHE_DIR" in os.environ:
        return Path(os.environ["GESTUREKIT_CACHE_DIR"]) if os.environ["GESTUREKIT_CACHE_DIR"] else None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gesturekit"


@lru_cache(maxsize=1)
def _machine() -> str:
    """The CPU's model and feature flags: an optimized graph may use this CPU's instructions only."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    wanted = [next((line for line in lines if line.startswith(key)), "") for key in ("model name", "flags")]
    return "|".join([platform.machine(), *wanted])


def optimized_graph_path(path: Path) -> Path | None:
    """The cache file of ``path``'s graph as ONNX Runtime optimizes it for this CPU (``None``: no cache). Its
    name changes with the model file (path, size, time), ONNX Runtime's version and the CPU."""
    folder = cache_dir()
    if folder is None:
        return None
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ort.__version__}|{_machine()}"
    return folder / "onnxruntime" / f"{path.parent.name}-{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"


class OnnxRuntimeBackend:
    """An ``onnxruntime.InferenceSession`` over a gesturekit ONNX file.

    Args:
        path: the ``.onnx`` file (with gesturekit metadata).
        threads: intra-op threads (default ``min(cpu_count, 8)``).
        providers: execution providers (default CPU only): names or ``(name, options)``, e.g.
            ``[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]``.
        spin: let idle worker threads spin (lower latency for a lone model, worse in a pipeline).
    """

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
        spin: bool = False,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise GesturekitError(f"{self.path}: ONNX file not found")
        providers = list(providers or ["CPUExecutionProvider"])
        names = [p if isinstance(p, str) else p[0] for p in providers]
        missing = [n for n in names if n not in ort.get_available_providers()]
        if missing:
            raise GesturekitError(f"{self.path}: onnxruntime has no {missing[0]} (available: "
                                  f"{', '.join(ort.get_available_providers())})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        # By default idle intra-op threads sleep instead of spinning: in the cascade app they share
        # the cores with a second session, the decoder and Python, and spinning there burns the CPU
        # they need. ``spin=True`` suits one model called back to back (lowest latency).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        cached = optimized_graph_path(self.path) if names == ["CPUExecutionProvider"] else None
        self.session = self._cached_session(cached, options, providers) if cached is not None else None
        if self.session is None:
            self.session = self._session(options, providers, cached)
        self.metadata = metadata_from_props(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.output_names = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def _cached_session(cached: Path, options: ort.SessionOptions, providers: list[Any]) -> ort.InferenceSession | None:
        """A session over the optimized graph a previous run saved (``None`` when there is none, or it is damaged)."""
        if not cached.is_file():
            return None
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimized already
        try:
            return ort.InferenceSession(str(cached), options, providers=providers)
        except Exception:  # noqa: BLE001 - a damaged cache file: rebuild from the model
            cached.unlink(missing_ok=True)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return None

    def _session(self, options: ort.SessionOptions, providers: list[Any], cached: Path | None) -> ort.InferenceSession:
        """A session over the model file; with ``cached``, its optimized graph is saved there for the next run
        (written under a temporary name, then renamed; a cache that cannot be written is skipped)."""
        staged = None
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                staged = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
                options.optimized_model_filepath = str(staged)
                options.log_severity_level = 3  # ORT warns that the graph suits this CPU only: the cache key says so
            except OSError:
                staged = None
        try:
            session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
            raise GesturekitError(f"{self.path}: not a readable ONNX model") from None
        if staged is not None:
            try:
                os.replace(staged, cached)
            except OSError:
                staged.unlink(missing_ok=True)
        return session

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Args: batch float32 [B,3,H,W]. Returns the outputs in ONNX order."""
        return self.session.run(self.output_names, {"images": np.ascontiguousarray(batch, dtype=np.float32)})
