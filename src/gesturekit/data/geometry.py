"""The input geometry and normalisation constants shared by training and the runtime (no torch).

``MEAN``/``STD`` are the normalisation written into model metadata; ``letterbox_geometry`` is the
detector's input size for a frame, in training's validation (``data.transforms``) and at runtime
(``runtime.preprocess``) alike.
"""

from __future__ import annotations

import math

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PAD_STRIDE = 32
"""The runtime's letterboxed input (and the detector's validation input) is padded to a multiple of this."""


def pad_to_stride(length: float, stride: int = PAD_STRIDE) -> int:
    """``length`` rounded up to a multiple of ``stride`` (a side of the letterboxed input)."""
    return math.ceil(length / stride) * stride


def frame_scale(height: int, width: int, size: int) -> float:
    """The runtime's resize factor for a ``height x width`` frame at input size ``size``.

    The frame keeps its aspect ratio and is resized to the pixel count of a 4:3 frame whose long side is
    ``size`` (448 -> 448x336), so every aspect ratio costs the detector about the same, up to a long side
    of ``4/3 * size``. A 4:3 frame is resized exactly as "long side ``size``" would; a 16:9 frame gets
    1.18x the scale (640x360 -> 530x298, where the long-side rule gave 448x252: hands cut by the frame
    border are a few pixels tall), a square one 0.87x.
    """
    return min(math.sqrt(size * size * 0.75 / (height * width)), size * 4 / 3 / max(height, width))


def letterbox_geometry(height: int, width: int, size: int, stride: int = PAD_STRIDE,
                       square: bool = True) -> tuple[int, int, int, int, float]:
    """``(resized_h, resized_w, padded_h, padded_w, scale)`` of ``data.transforms.letterbox``.

    ``square``: long side ``size``, padded to ``size x size`` (the training canvas); otherwise the
    runtime's ``frame_scale``, each side padded to a multiple of ``stride``.
    """
    scale = size / max(height, width) if square else frame_scale(height, width, size)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if square:
        return new_h, new_w, size, size, scale
    return new_h, new_w, pad_to_stride(new_h, stride), pad_to_stride(new_w, stride), scale
