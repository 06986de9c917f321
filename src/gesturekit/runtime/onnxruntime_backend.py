"""ONNX Runtime backend: runs a gesturekit ``.onnx`` file, metadata read from the file."""

from __future__ import annotations

import os
from collections.abc import Sequence
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
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
            raise GesturekitError(f"{self.path}: not a readable ONNX model") from None
        self.metadata = metadata_from_props(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Args: batch float32 [B,3,H,W]. Returns the outputs in ONNX order."""
        return self.session.run(self.output_names, {"images": np.ascontiguousarray(batch, dtype=np.float32)})
