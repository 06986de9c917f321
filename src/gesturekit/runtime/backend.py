"""The inference backend protocol: a model behind ``infer(batch) -> outputs`` plus its metadata."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from gesturekit.data.geometry import MEAN, STD
from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import check_metadata


@runtime_checkable
class Backend(Protocol):
    """Runs a detector or classifier exported per docs/ARCHITECTURE.md.

    Attributes:
        metadata: the model metadata (``models/metadata.py``).
    """

    metadata: dict[str, Any]

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Args: batch float32 [B,3,H,W], normalised. Returns float32 outputs in ONNX order
        (detector: ``boxes`` [B,N,4], ``scores`` [B,N,C]; classifier: ``probs`` [B,K])."""
        ...


def backend_metadata(backend: Backend, task: str) -> dict[str, Any]:
    """The backend's metadata, checked for ``task`` and for the runtime's preprocessing.

    The runtime normalises with ``data.transforms.normalize`` (``MEAN``/``STD``), the
    preprocessing of training; a model that declares other values is refused.

    Raises:
        GesturekitError: wrong task, missing keys, or a different normalisation.
    """
    source = str(getattr(backend, "path", type(backend).__name__))
    meta = check_metadata(backend.metadata, source, task)
    if not (np.allclose(meta["mean"], MEAN) and np.allclose(meta["std"], STD)):
        raise GesturekitError(f"{source}: metadata.mean/std {meta['mean']}/{meta['std']} differ from the "
                              f"runtime normalisation {list(MEAN)}/{list(STD)}")
    return meta
