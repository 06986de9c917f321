"""The crop convention shared by classifier training and the cascade: widen a box, clip it."""

from __future__ import annotations


def widen_box(
    box: tuple[float, float, float, float],
    frame_size: tuple[int, int],
    margin_px: float = 0.0,
    enlarge_ratio: float = 1.0,
    square: bool = False,
) -> tuple[int, int, int, int]:
    """Widen a detector box into the classifier's region of interest, clipped to the frame.

    The box grows by ``enlarge_ratio`` about its centre (TAO's ``bbox_enlarge_ratio``), is made
    square on its longer side if ``square``, then grows by ``margin_px`` on every side
    (DeepStream's ``MARGIN``). Unlike the published DeepStream sample, the right edge is
    ``x2 = min(x1 + w + margin, W - 1)``, not a width.

    Args:
        box: ``(x1, y1, x2, y2)`` in pixels.
        frame_size: ``(W, H)`` of the frame.

    Returns:
        Integer ``(x1, y1, x2, y2)`` with ``0 <= x1 < x2 <= W - 1`` and ``0 <= y1 < y2 <= H - 1``.
    """
    x1, y1, x2, y2 = box
    width, height = frame_size
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1) * enlarge_ratio, (y2 - y1) * enlarge_ratio
    if square:
        w = h = max(w, h)
    left, top = cx - w / 2 - margin_px, cy - h / 2 - margin_px
    right, bottom = cx + w / 2 + margin_px, cy + h / 2 + margin_px
    nx1 = int(max(0, min(round(left), width - 2)))
    ny1 = int(max(0, min(round(top), height - 2)))
    nx2 = int(min(max(round(right), nx1 + 1), width - 1))
    ny2 = int(min(max(round(bottom), ny1 + 1), height - 1))
    return nx1, ny1, nx2, ny2
