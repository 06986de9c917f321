"""A sample clip shipped with the package (licence in ``NOTICE``), so that the app runs on a fresh machine:
``gesturekit infer --sample`` or ``GestureRecognizer().stream(SAMPLE_VIDEO)``."""

from pathlib import Path

SAMPLE_VIDEO = Path(__file__).with_name("asl_hand.25fps.mp4")
"""One hand signing letters, 620x1080 portrait, 25 fps, 325 frames (Apache-2.0, see ``NOTICE``)."""
