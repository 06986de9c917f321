"""The in-memory annotation types every format reader produces and every writer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Box:
    """One labelled box in pixels of the original image, corners ``(x1, y1)`` to ``(x2, y2)``."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass(slots=True)
class ImageAnnotation:
    """An image and its boxes.

    Attributes:
        image: path of the image file.
        width, height: image size in pixels.
        boxes: the labelled boxes.
        group: what must not be split across train/val (EgoHands video, HaGRID ``user_id``).
    """

    image: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    group: str | None = None
