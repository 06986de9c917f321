"""Models: backbones, the hand detector and the gesture classifier, registered by name."""

from gesturekit.models import classifier, detector  # noqa: F401  (registers detectnet_v2, gesturenet)
from gesturekit.models.registry import create_model, list_models

__all__ = ["create_model", "list_models"]
