"""Models: backbones, the hand detector and the gesture classifier, registered by name.

``create_model`` and ``list_models`` import the PyTorch models on first use, so that the runtime's
modules here (metadata, postprocess, zoo) load without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_model", "list_models"]

if TYPE_CHECKING:
    from gesturekit.models.registry import create_model, list_models


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gesturekit.models import classifier, detector, registry  # noqa: F401  (registers detectnet_v2, gesturenet)

        return getattr(registry, name)
    raise AttributeError(f"module 'gesturekit.models' has no attribute {name!r}")
