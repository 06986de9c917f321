"""gesturekit: open hand-gesture recognition, from datasets to a streaming cascade app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["GestureRecognizer", "Result", "__version__"]

if TYPE_CHECKING:
    from gesturekit.pipeline.recognizer import GestureRecognizer, Result


def __getattr__(name: str) -> Any:
    """``GestureRecognizer`` and ``Result``, imported on first use: ``import gesturekit`` (the CLI's first
    step) stays free of the models' libraries."""
    if name in ("GestureRecognizer", "Result"):
        from gesturekit.pipeline import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'gesturekit' has no attribute {name!r}")
