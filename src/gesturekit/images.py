"""Reading image files: the one list of image suffixes and the one decoder to uint8 RGB.

Every reader of image files in the package goes through :func:`read_rgb`, so that an unreadable
file, a decompression bomb and a 16-bit or palette image are handled the same way everywhere.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from gesturekit.errors import GesturekitError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

MAX_IMAGE_PIXELS = 89_478_485
"""Images with more pixels than this (Pillow's own warning limit, about 9459 x 9459) are refused
from their header, before any pixel is decoded: a small file can declare a huge canvas."""

_LIMIT = f"{MAX_IMAGE_PIXELS:,}-pixel limit (a decompression bomb?)"

# The limit is enforced by read_rgb (one error line), so Pillow's warning would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}


def to_rgb(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> ``[H, W, 3]`` uint8 RGB.

    16-bit and 32-bit integer images are scaled from 0..65535 and float images from 0..1 to
    0..255 (Pillow's own conversion clips them, so a 16-bit frame turns white); alpha is dropped.
    """
    if image.mode in _WIDE_MODES or image.mode == "F":
        scale = 255.0 if image.mode == "F" else 255.0 / _WIDE_MODES[image.mode]
        grey = np.asarray(image, dtype=np.float32) * scale
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image)  # writable, as torch.from_numpy wants


def read_rgb(file: str | Path | IO[bytes], name: str | None = None) -> np.ndarray:
    """Decode an image file (or file object) to ``[H, W, 3]`` uint8 RGB.

    Args:
        file: a path or a binary file object.
        name: what an error calls the file (default: the path).

    Raises:
        GesturekitError: missing, unreadable or truncated file, or more than
            :data:`MAX_IMAGE_PIXELS` pixels (one line naming the file).
    """
    where = name or str(file if isinstance(file, (str, Path)) else getattr(file, "name", "image"))
    try:
        with Image.open(file) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise GesturekitError(f"{where}: image of {width}x{height} is over the {_LIMIT}")
            return to_rgb(image)
    except FileNotFoundError:
        raise GesturekitError(f"{where}: image not found") from None
    except GesturekitError:
        raise
    except Image.DecompressionBombError:
        raise GesturekitError(f"{where}: image is over the {_LIMIT}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types for damaged files
        raise GesturekitError(f"{where}: unreadable image ({type(exc).__name__}: {exc})") from None
