"""Dataset statistics: images and boxes per split, boxes per class, a histogram of box sizes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gesturekit.data.formats.kitti import read_kitti_splits
from gesturekit.data.records import Box, ImageAnnotation

SIZE_EDGES = (16, 32, 64, 128, 256)  # box size = sqrt(width * height) in pixels


def size_bin(box: Box) -> str:
    """The histogram bin of a box: ``<16``, ``16-32``, ..., ``>=256`` (sqrt of its area, px)."""
    size = math.sqrt(box.width * box.height)
    if size < SIZE_EDGES[0]:
        return f"<{SIZE_EDGES[0]}"
    for lo, hi in zip(SIZE_EDGES, SIZE_EDGES[1:]):
        if size < hi:
            return f"{lo}-{hi}"
    return f">={SIZE_EDGES[-1]}"


def size_bins() -> list[str]:
    middle = [f"{lo}-{hi}" for lo, hi in zip(SIZE_EDGES, SIZE_EDGES[1:])]
    return [f"<{SIZE_EDGES[0]}", *middle, f">={SIZE_EDGES[-1]}"]


@dataclass
class DatasetStats:
    """Counts of a dataset.

    Attributes:
        images, boxes: totals over distinct images.
        images_without_boxes: images with no box (hard negatives).
        classes: class -> boxes.
        sizes: size bin (see :func:`size_bin`) -> boxes, every bin present.
        splits: split name -> ``{"images": n, "boxes": m}``.
    """

    images: int = 0
    boxes: int = 0
    images_without_boxes: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_stats(splits: Mapping[str, Sequence[ImageAnnotation]]) -> DatasetStats:
    """Statistics of split name -> annotations (an image in two splits is counted once)."""
    distinct = {a.image: a for anns in splits.values() for a in anns}.values()
    boxes = [b for a in distinct for b in a.boxes]
    classes = Counter(b.label for b in boxes)
    sizes = Counter(size_bin(b) for b in boxes)
    return DatasetStats(
        images=len(distinct),
        boxes=len(boxes),
        images_without_boxes=sum(1 for a in distinct if not a.boxes),
        classes=dict(sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))),
        sizes={name: sizes.get(name, 0) for name in size_bins()},
        splits={
            name: {"images": len(anns), "boxes": sum(len(a.boxes) for a in anns)}
            for name, anns in splits.items()
        },
    )


def kitti_stats(root: str | Path) -> DatasetStats:
    """Statistics of a KITTI dataset directory (its splits, plus ``unlisted`` images)."""
    return compute_stats(read_kitti_splits(root))


def render_stats(stats: DatasetStats, console: Console, title: str = "") -> None:
    """Print the statistics as rich tables: splits, classes, box size histogram."""
    console.print(
        f"[bold]{escape(title)}[/bold] {stats.images} images, {stats.boxes} boxes, "
        f"{stats.images_without_boxes} images without boxes"
    )
    table = Table("split", "images", "boxes", title="splits")
    for name, counts in stats.splits.items():
        table.add_row(escape(name), str(counts["images"]), str(counts["boxes"]))
    console.print(table)
    table = Table("class", "boxes", "share", title="classes")
    for name, count in stats.classes.items():
        table.add_row(escape(name), str(count), f"{count / max(stats.boxes, 1):.1%}")
    console.print(table)
    table = Table("sqrt(w*h) px", "boxes", "", title="box sizes")
    peak = max(stats.sizes.values(), default=0)
    for name, count in stats.sizes.items():
        bar = "#" * (round(30 * count / peak) if peak else 0)
        table.add_row(name, str(count), bar)
    console.print(table)
