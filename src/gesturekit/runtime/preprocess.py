"""The runtime's preprocessing without torch: torchvision's uint8 resize in numpy, normalised into a canvas.

Training and evaluation resize with torchvision (``data.transforms``), whose antialiased bilinear
resize of uint8 images computes in fixed point: per output pixel, integer weights scaled by a power
of two chosen per axis, a horizontal pass, then a vertical one, each rounded and clamped to uint8.
``resize`` does the same integer arithmetic, so a model sees bit for bit the inputs it was evaluated
on (Pillow's resize, the same filter with other rounding, moves an INT8 detector's AP by a point).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gesturekit.data.geometry import MEAN, PAD_STRIDE, STD, letterbox_geometry

_SCALE = np.array([1 / (255 * s) for s in STD], np.float32)[:, None, None]
_OFFSET = np.array([m / s for m, s in zip(MEAN, STD)], np.float32)[:, None, None]
_MAX_WEIGHT_BITS = 22
_INT16_LIMIT = 1 << 15
_BLOCK = 64
"""Rows a resize pass combines at a time: its int32 sums stay in the CPU's cache."""


def check_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` itself when it is a uint8 RGB [H,W,3] array.

    Raises:
        ValueError: any other array.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB frame [H,W,3], got {getattr(frame, 'dtype', type(frame))} "
                         f"{getattr(frame, 'shape', '')}")
    return frame


@lru_cache(maxsize=64)
def _weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per output index along one axis: input indices [out, K], integer weights [out, K] and their bits.

    The triangle filter widened by the scale when shrinking, weights normalised, then scaled by the
    largest power of two that keeps them in int16 (torchvision's ``compute_index_ranges_int16_weights``).
    """
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv_scale = 1.0 / scale if scale >= 1.0 else 1.0
    centers = scale * (np.arange(out_size) + 0.5)
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    size = np.minimum((centers + support + 0.5).astype(np.int64), in_size) - first
    taps = np.arange(int(size.max()))
    weights = np.clip(1.0 - np.abs((taps + first[:, None] - centers[:, None] + 0.5) * inv_scale), 0.0, None)
    weights[taps >= size[:, None]] = 0.0
    total = weights.sum(1, keepdims=True)
    weights = np.divide(weights, total, out=weights, where=total != 0)
    bits = 0
    while bits < _MAX_WEIGHT_BITS and int(0.5 + weights.max() * (1 << (bits + 1))) < _INT16_LIMIT:
        bits += 1
    fixed = (0.5 + weights * (1 << bits)).astype(np.int32)  # weights are >= 0: C's (int)(0.5 + v)
    return np.minimum(first[:, None] + taps, in_size - 1), fixed, bits


def _taps(image: np.ndarray, index: np.ndarray, weights: np.ndarray, bits: int) -> np.ndarray:
    """Rows of a uint8 [H, X] array combined: row ``j`` of the result is ``sum_t weights[j, t] * image[index[j, t]]``
    in fixed point, rounded and clamped to uint8 (``index``, ``weights``: [out, K] from ``_weights``)."""
    acc = np.full((len(index), image.shape[1]), 1 << (bits - 1), np.int32)
    product = np.empty_like(acc)
    for tap in range(index.shape[1]):
        acc += np.multiply(image[index[:, tap]], weights[:, tap:tap + 1], out=product)
    np.right_shift(acc, bits, out=acc)
    return np.clip(acc, 0, 255, out=acc).astype(np.uint8)


def _rows(frame: np.ndarray, height: int) -> np.ndarray:
    """Resize axis 0 of a uint8 [H, W, 3] frame, ``_BLOCK`` output rows at a time (the sums stay in cache)."""
    index, weights, bits = _weights(frame.shape[0], height)
    flat = frame.reshape(frame.shape[0], -1)
    out = np.empty((height, flat.shape[1]), np.uint8)
    for start in range(0, height, _BLOCK):
        out[start:start + _BLOCK] = _taps(flat, index[start:start + _BLOCK], weights[start:start + _BLOCK], bits)
    return out.reshape(height, *frame.shape[1:])


def _columns(frame: np.ndarray, width: int) -> np.ndarray:
    """Resize axis 1 of a uint8 [H, W, 3] frame: ``_BLOCK`` frame rows at a time, transposed by whole pixels
    (3-byte items) so that the columns combine as rows do, then transposed back."""
    index, weights, bits = _weights(frame.shape[1], width)
    pixels = np.ascontiguousarray(frame).view("V3")[..., 0]  # [H, W] of pixels
    out = np.empty((frame.shape[0], width, 3), np.uint8)
    for start in range(0, frame.shape[0], _BLOCK):
        block = np.ascontiguousarray(pixels[start:start + _BLOCK].T)  # [W, rows]
        combined = _taps(block.view(np.uint8).reshape(block.shape[0], -1), index, weights, bits)  # [width, rows*3]
        rows = np.ascontiguousarray(combined.view("V3").T)  # [rows, width] of pixels
        out[start:start + _BLOCK] = rows.view(np.uint8).reshape(-1, width, 3)
    return out


def resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB [H,W,3] -> [height,width,3]: ``torchvision.transforms.v2.functional.resize(...,
    antialias=True)`` of the image, bit for bit (columns first, then rows, as it does)."""
    frame = check_frame(frame)
    if frame.shape[1] != width:
        frame = _columns(frame, width)
    if frame.shape[0] != height:
        frame = _rows(frame, height)
    return frame


def normalized_canvas(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [h,w,3] -> float32 [3,height,width]: normalised with ``MEAN``/``STD``, zero-padded (normalised
    black) at the bottom and right."""
    canvas = np.empty((3, height, width), np.float32)
    canvas[:] = -_OFFSET
    h, w = image.shape[:2]
    region = canvas[:, :h, :w]
    np.multiply(image.transpose(2, 0, 1), _SCALE, out=region, casting="unsafe")
    region -= _OFFSET
    return canvas


def preprocess_frame(frame: np.ndarray, input_size: int) -> tuple[np.ndarray, float]:
    """The detector's input of a frame: resized by ``frame_scale``, padded to ``PAD_STRIDE``, normalised.

    Args:
        frame: uint8 RGB [H,W,3].

    Returns:
        float32 [3,h,w] and ``scale`` (a frame point ``p`` is at ``p * scale`` in the input).
    """
    new_h, new_w, padded_h, padded_w, scale = letterbox_geometry(*check_frame(frame).shape[:2], input_size,
                                                                 PAD_STRIDE, square=False)
    return normalized_canvas(resize(frame, new_h, new_w), padded_h, padded_w), scale


def preprocess_crop(crop: np.ndarray, input_size: int) -> np.ndarray:
    """A classifier's input of a uint8 RGB crop [h,w,3]: resized to ``input_size`` square, normalised.
    Returns float32 [3,S,S]."""
    return normalized_canvas(resize(crop, input_size, input_size), input_size, input_size)
