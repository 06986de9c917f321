"""The runtime's preprocessing without torch: torchvision's uint8 resize in numpy, normalised into a canvas.

Training and evaluation resize with torchvision (``data.transforms``), whose antialiased bilinear
resize of uint8 images computes in fixed point: per output pixel, integer weights scaled by a power
of two chosen per axis, a horizontal pass, then a vertical one, each rounded and clamped to uint8.
``resize`` computes the same fixed-point sums, so a model sees bit for bit the inputs it was evaluated
on (Pillow's resize, the same filter with other rounding, moves an INT8 detector's AP by a point).
It sums them as banded matrix products in floating point, where they are exact (``_Pass``): a
product runs in the BLAS's vector loops, where numpy gathering the taps one by one would cost
several times more.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gesturekit.data.geometry import MEAN, PAD_STRIDE, STD, letterbox_geometry

_SCALE = np.array([1 / (255 * s) for s in STD], np.float32)[:, None, None]
_OFFSET = np.array([m / s for m, s in zip(MEAN, STD)], np.float32)[:, None, None]
_MAX_WEIGHT_BITS = 22
_INT16_LIMIT = 1 << 15
_EXACT_FLOAT32 = 1 << 24
"""Integers up to this are exact in float32: a pass whose fixed-point sums stay below it runs in float32."""
_COLUMN_BLOCK = 4
"""Output columns per band of the columns pass: few, as its matrix is widened to the 3 channels."""
_ROW_BLOCK = 8
"""Output rows per band of the rows pass."""
_BLAS_SINGLE_THREAD = 1 << 18
"""OpenBLAS runs a product of at most this many multiply-adds (m*n*k) on the calling thread only; a larger one
wakes its worker threads, which spin after the product and take the CPU the app's other threads need."""


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


@dataclass(frozen=True)
class _Pass:
    """One axis of a resize as banded matrix products: output lines ``k*block`` to ``(k+1)*block`` are the
    product of ``span`` input lines from ``starts[k]`` (all those their weights touch) with ``matrices[k]``.

    The weights are torchvision's integers times ``2**-bits``: a power of two, so every product and
    partial sum is an integer (below ``2**24`` for float32, else the pass is float64) times that power,
    exact whatever order the BLAS sums in, and ``floor(sum + 0.5)`` is the fixed-point ``(sum +
    2**(bits-1)) >> bits`` of torchvision. ``clip``: whether a sum may round past 255.
    """

    dtype: type
    block: int
    span: int
    starts: tuple[int, ...]
    matrices: np.ndarray
    clip: bool


@lru_cache(maxsize=64)
def _pass(in_size: int, out_size: int, channels: int, block: int) -> _Pass:
    """The pass from ``in_size`` to ``out_size`` lines in bands of ``block`` output lines. With ``channels`` > 1
    the lines are columns of interleaved channels and each matrix is [span*channels, block*channels], widened
    to keep the channels apart; else the lines are rows and each matrix is [block, span]."""
    index, fixed, bits = _weights(in_size, out_size)
    count = -(-out_size // block)
    firsts = index[::block, 0]
    lasts = np.maximum.reduceat(index.max(1), np.arange(0, out_size, block))
    span = int((lasts - firsts).max()) + 1
    starts = np.minimum(firsts, in_size - span)
    outputs = np.arange(out_size)[:, None].repeat(index.shape[1], 1)
    taps = fixed > 0
    weights = np.zeros((count, span, block))
    weights[outputs[taps] // block, index[taps] - starts[outputs[taps] // block], outputs[taps] % block] = \
        fixed[taps] * 2.0 ** -bits
    largest = 255 * float(fixed.sum(1).max())
    dtype = np.float32 if largest + (1 << (bits - 1)) < _EXACT_FLOAT32 else np.float64
    if channels > 1:
        eye = np.eye(channels)
        weights = (weights[:, :, None, :, None] * eye[:, None, :]).reshape(count, span * channels, block * channels)
    else:
        weights = weights.transpose(0, 2, 1)
    return _Pass(dtype, block, span, tuple(int(v) for v in starts), np.ascontiguousarray(weights, dtype),
                 largest / 2**bits + 0.5 >= 256)


def _rounded(sums: np.ndarray, clip: bool) -> np.ndarray:
    """Scaled fixed-point sums -> their 8-bit values (as floats), in place."""
    sums += 0.5
    np.floor(sums, out=sums)
    return np.minimum(sums, 255, out=sums) if clip else sums


def _columns(lines: np.ndarray, width: int) -> np.ndarray:
    """Resize axis 1 of a float [H, W*3] image of interleaved RGB to ``width`` pixels: per band, the rows
    times its matrix, as few rows at a time as keep the BLAS on this thread."""
    spec = _pass(lines.shape[1] // 3, width, 3, _COLUMN_BLOCK)
    lines = lines.astype(spec.dtype, copy=False)
    out = np.empty((lines.shape[0], width * 3), spec.dtype)
    step, span = spec.block * 3, spec.span * 3
    rows = max(1, _BLAS_SINGLE_THREAD // spec.matrices[0].size)
    for k, start in enumerate(spec.starts):
        matrix = spec.matrices[k, :, :out.shape[1] - k * step]  # the last band may be narrower
        for top in range(0, lines.shape[0], rows):
            np.matmul(lines[top:top + rows, start * 3:start * 3 + span], matrix,
                      out=out[top:top + rows, k * step:(k + 1) * step])
    return _rounded(out, spec.clip)


def _rows(lines: np.ndarray, height: int) -> np.ndarray:
    """Resize axis 0 of a float [H, X] image to ``height`` rows: per band, its matrix times the rows it
    touches, as few columns at a time as keep the BLAS on this thread."""
    spec = _pass(lines.shape[0], height, 1, _ROW_BLOCK)
    lines = lines.astype(spec.dtype, copy=False)
    out = np.empty((height, lines.shape[1]), spec.dtype)
    step = spec.block
    columns = max(1, _BLAS_SINGLE_THREAD // spec.matrices[0].size)
    for k, start in enumerate(spec.starts):
        matrix = spec.matrices[k, :height - k * step]
        for left in range(0, lines.shape[1], columns):
            np.matmul(matrix, lines[start:start + spec.span, left:left + columns],
                      out=out[k * step:(k + 1) * step, left:left + columns])
    return _rounded(out, spec.clip)


def resized(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """``resize`` without the final cast: [height,width,3] of its values as float32 (integers 0-255), or
    ``frame`` itself when its size is already that."""
    frame = check_frame(frame)
    in_h, in_w = frame.shape[:2]
    if (in_h, in_w) == (height, width):
        return frame
    lines = frame.astype(np.float32).reshape(in_h, in_w * 3)  # a contiguous copy, also of a strided crop
    if in_w != width:
        lines = _columns(lines, width)
    if in_h != height:
        lines = _rows(lines, height)
    return lines.astype(np.float32, copy=False).reshape(height, width, 3)


def resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB [H,W,3] -> [height,width,3]: ``torchvision.transforms.v2.functional.resize(...,
    antialias=True)`` of the image, bit for bit (columns first, then rows, as it does)."""
    return resized(frame, height, width).astype(np.uint8, copy=False)


def normalized_canvas(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h,w,3] of values 0-255 (uint8, or ``resized``'s floats: the same results) -> float32
    [3,height,width]: normalised with ``MEAN``/``STD``, zero-padded (normalised black) at the bottom and right."""
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
    return normalized_canvas(resized(frame, new_h, new_w), padded_h, padded_w), scale


def preprocess_crop(crop: np.ndarray, input_size: int) -> np.ndarray:
    """A classifier's input of a uint8 RGB crop [h,w,3]: resized to ``input_size`` square, normalised.
    Returns float32 [3,S,S]."""
    return normalized_canvas(resized(crop, input_size, input_size), input_size, input_size)
