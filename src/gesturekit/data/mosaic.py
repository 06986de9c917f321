"""Mosaic augmentation (as in YOLOv4/Ultralytics): four training frames tiled into one sample.

Each frame is fitted into the ``size x size`` canvas as the detector's training transform fits it
(long side ``size``, so its hands keep the scale they are trained at) and anchored by one corner at a
random centre of the canvas: the first frame's bottom-right corner, the second's bottom-left, the
third's top-right, the fourth's top-left. The canvas shows the part of each frame that falls in its
quadrant; boxes keep their full extent (reaching past the canvas), so that the training transform
clips them and drops those mostly cut off, as it does for a frame's own border.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from gesturekit.data.transforms import Target, letterbox_geometry

FRAMES = 4
CENTRE_RANGE = (0.25, 0.75)
"""The random centre's range, as fractions of the canvas side."""


def mosaic(frames: list[tuple[torch.Tensor, Target]], size: int, centre: tuple[float, float]
           ) -> tuple[torch.Tensor, Target]:
    """Tile four frames around ``centre`` (canvas pixels) of a black ``size x size`` canvas.

    Args:
        frames: four ``(uint8 image [3, H, W], {"boxes": [N, 4] xyxy pixels, "labels": [N]})``.

    Returns:
        The canvas (uint8 [3, size, size]) and every frame's boxes in its pixels, unclipped.
    """
    if len(frames) != FRAMES:
        raise ValueError(f"mosaic: expected {FRAMES} frames, got {len(frames)}")
    cx, cy = round(centre[0]), round(centre[1])
    canvas = torch.zeros(3, size, size, dtype=torch.uint8)
    boxes, labels = [], []
    for k, (image, target) in enumerate(frames):
        height, width = image.shape[-2:]
        new_h, new_w, *_ = letterbox_geometry(height, width, size)
        left = cx - new_w if k % 2 == 0 else cx  # the frame's top-left corner on the canvas
        top = cy - new_h if k < 2 else cy
        x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + new_w, size), min(top + new_h, size)
        resized = F.resize(image, [new_h, new_w], antialias=True)
        canvas[:, y1:y2, x1:x2] = resized[:, y1 - top:y2 - top, x1 - left:x2 - left]
        factor = torch.tensor([new_w / width, new_h / height] * 2)
        boxes.append(target["boxes"].float().reshape(-1, 4) * factor + torch.tensor([left, top] * 2))
        labels.append(target["labels"])
    return canvas, {"boxes": torch.cat(boxes), "labels": torch.cat(labels)}


class MosaicDataset(Dataset):
    """Training frames where a sample is, with probability ``probability``, a mosaic of its frame and
    three others drawn at random, then ``transform``-ed (the detector's training augmentation).

    Args:
        frames: a dataset of untransformed frames (``data.transforms.keep_frame`` as its transform).
        transform: ``(image, target) -> (image, target)``, applied to every sample.
        probability: the share of samples that are mosaics.
        size: the training canvas side (``augmentation.input_size``).
    """

    def __init__(self, frames: Dataset, transform: Callable, probability: float, size: int) -> None:
        self.frames, self.transform = frames, transform
        self.probability, self.size = probability, size

    def __len__(self) -> int:
        return len(self.frames)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        image, target = self.frames[i]
        if torch.rand(()) < self.probability:
            others = torch.randint(len(self), (FRAMES - 1,)).tolist()
            low, high = (self.size * f for f in CENTRE_RANGE)
            centre = tuple((low + (high - low) * torch.rand(2)).tolist())
            image, target = mosaic([(image, target)] + [self.frames[j] for j in others], self.size, centre)
        return self.transform(image, target)
