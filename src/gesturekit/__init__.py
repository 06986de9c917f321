"""gesturekit: open hand-gesture recognition, from datasets to a streaming cascade app."""

__version__ = "0.1.0"
