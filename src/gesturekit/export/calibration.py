"""Calibration images for INT8 export: image folders or KITTI datasets, sampled evenly.

A *source* is either a folder of images or a KITTI dataset directory (``images/``, ``splits/``;
docs/ARCHITECTURE.md), of which one split is read. Use training images: calibrating on the images
an export is evaluated on hides the quantization error. For a classifier, a folder holds hand crops
and a KITTI dataset gives the labelled boxes, widened with the model's crop convention
(``data/crops.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gesturekit.data.crops import widen_box
from gesturekit.data.formats.kitti import is_image, read_kitti_dataset
from gesturekit.errors import GesturekitError
from gesturekit.images import read_rgb


@dataclass(frozen=True, slots=True)
class CalibrationItem:
    """One calibration input: an image, or the crop of ``box`` (``x1, y1, x2, y2`` pixels) in it."""

    image: Path
    box: tuple[float, float, float, float] | None = None


def is_kitti_dataset(path: Path) -> bool:
    """Whether ``path`` is a KITTI dataset directory (it has ``images/`` and ``splits/``)."""
    return (path / "images").is_dir() and (path / "splits").is_dir()


def _items_of(source: Path, split: str, boxes: bool) -> list[CalibrationItem]:
    if not source.is_dir():
        raise GesturekitError(f"{source}: calibration images: not a directory")
    if is_kitti_dataset(source):
        annotations = read_kitti_dataset(source, split)
        if boxes:
            return [CalibrationItem(a.image, (b.x1, b.y1, b.x2, b.y2)) for a in annotations for b in a.boxes]
        return [CalibrationItem(a.image) for a in annotations]
    files = sorted(p for p in source.iterdir() if is_image(p))
    if not files:
        raise GesturekitError(f"{source}: calibration images: no image file (and not a KITTI dataset)")
    return [CalibrationItem(p) for p in files]


def select_calibration_items(sources: Sequence[Path], split: str, count: int,
                             boxes: bool = False) -> list[CalibrationItem]:
    """Up to ``count`` items spread evenly over all sources (in order), so every source and every
    part of a sorted dataset (e.g. each EgoHands video) is represented.

    Args:
        sources: image folders or KITTI dataset directories.
        split: the split read from KITTI datasets.
        count: the most items returned.
        boxes: a KITTI dataset gives one item per labelled box (classifier crops), not per image.
    """
    items = [item for source in sources for item in _items_of(Path(source), split, boxes)]
    if not items:
        raise GesturekitError(f"{', '.join(map(str, sources))}: no calibration image")
    picks = np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int))
    return [items[i] for i in picks]


def read_item(item: CalibrationItem, crop: Mapping[str, Any] | None = None) -> np.ndarray:
    """The item as uint8 RGB [H,W,3]: the whole image, or its box widened by ``crop``
    (``margin_px``, ``enlarge_ratio``, ``square``) and cut out."""
    rgb = read_rgb(item.image)
    if item.box is None:
        return rgb
    x1, y1, x2, y2 = widen_box(item.box, (rgb.shape[1], rgb.shape[0]), **dict(crop or {}))
    return rgb[y1:y2, x1:x2]


def calibration_inputs(items: Sequence[CalibrationItem], preprocess: Callable[[np.ndarray], np.ndarray],
                       crop: Mapping[str, Any] | None = None) -> Iterator[np.ndarray]:
    """Model inputs float32 [1,3,H,W], one per item, read lazily.

    Args:
        preprocess: uint8 RGB [H,W,3] -> float32 [3,H,W], as at runtime (the detector's letterbox,
            the classifier's crop resize).
        crop: the classifier's crop convention for items with a box.
    """
    for item in items:
        yield preprocess(read_item(item, crop))[None].astype(np.float32, copy=False)
