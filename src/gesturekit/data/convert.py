"""Convert a source dataset (EgoHands, HaGRID, YOLO, VOC, KITTI) into a KITTI dataset directory.

Steps: read the source, rename classes, clip boxes to their image, make the splits, write.
Nothing is dropped silently: every change is reported in :attr:`ConvertReport.notes`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from gesturekit.data.classmap import ClassMap
from gesturekit.data.formats.egohands import read_egohands, read_egohands_csv
from gesturekit.data.formats.hagrid import read_hagrid
from gesturekit.data.formats.kitti import NO_SPLIT, read_kitti_splits, write_kitti_dataset
from gesturekit.data.formats.voc import read_voc
from gesturekit.data.formats.yolo import read_yolo
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.data.split import SplitMethod, resplit
from gesturekit.errors import GesturekitError

CLIP_TOLERANCE_PX = 0.01  # a box moved less than this by clipping is float noise, not worth a note


@dataclass
class Source:
    """A dataset as read: split name -> images (``all`` when it has no splits), and notes."""

    splits: dict[str, list[ImageAnnotation]]
    notes: list[str] = field(default_factory=list)

    @property
    def has_splits(self) -> bool:
        return list(self.splits) != [NO_SPLIT]

    @property
    def has_groups(self) -> bool:
        return any(a.group is not None for anns in self.splits.values() for a in anns)


@dataclass
class ConvertReport:
    """What :func:`convert` wrote: the splits (paths inside the output), the split method, notes."""

    splits: dict[str, list[ImageAnnotation]]
    method: SplitMethod
    notes: list[str]


def _egohands(src: Path) -> Source:
    annotations, dropped = read_egohands(src)
    notes = [f"dropped {dropped} EgoHands polygons whose box is empty inside the image"] if dropped else []
    return Source({NO_SPLIT: annotations}, notes)


READERS: dict[str, Callable[[Path], Source]] = {
    "egohands": _egohands,
    "egohands-csv": lambda src: Source(read_egohands_csv(src)),
    "hagrid": lambda src: Source(read_hagrid(src)),
    "yolo": lambda src: Source(read_yolo(src)),
    "voc": lambda src: Source(read_voc(src)),
    "kitti": lambda src: Source(read_kitti_splits(src)),
}
FORMATS = tuple(READERS)


def read_source(fmt: str, src: str | Path) -> Source:
    """Read ``src`` in format ``fmt`` (one of :data:`FORMATS`)."""
    src = Path(src)
    if fmt not in READERS:
        raise GesturekitError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if not src.exists():
        raise GesturekitError(f"{src}: not found")
    return READERS[fmt](src)


def clip_to_image(annotations: Sequence[ImageAnnotation]) -> tuple[list[ImageAnnotation], int, list[str]]:
    """Clip every box to its image.

    Returns:
        The clipped annotations, how many boxes moved by more than ``CLIP_TOLERANCE_PX``, and
        a description of each box dropped because nothing of it lies inside the image.
    """
    out, moved, dropped = [], 0, []
    for ann in annotations:
        boxes = []
        for b in ann.boxes:
            x1, x2 = min(max(b.x1, 0.0), ann.width), min(max(b.x2, 0.0), ann.width)
            y1, y2 = min(max(b.y1, 0.0), ann.height), min(max(b.y2, 0.0), ann.height)
            if x2 <= x1 or y2 <= y1:
                dropped.append(f"{ann.image.name}: {b.label} {b.x1:g},{b.y1:g},{b.x2:g},{b.y2:g}")
                continue
            if max(abs(x1 - b.x1), abs(y1 - b.y1), abs(x2 - b.x2), abs(y2 - b.y2)) > CLIP_TOLERANCE_PX:
                moved += 1
            boxes.append(Box(b.label, x1, y1, x2, y2))
        out.append(replace(ann, boxes=boxes))
    return out, moved, dropped


def convert(
    fmt: str,
    src: str | Path,
    out: str | Path,
    split: SplitMethod | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    class_map: ClassMap | None = None,
    overwrite: bool = False,
) -> ConvertReport:
    """Convert ``src`` (format ``fmt``) into a KITTI dataset at ``out``.

    Args:
        split: ``keep`` the source's splits, or make train/val ``random``-ly or by ``group``
            (see :func:`gesturekit.data.split.resplit`). ``None``: ``keep`` when the source has
            splits, else ``group`` when it has groups, else ``random``.
        class_map: renames classes; a mapped class that never occurs gets a note.
        overwrite: replace a dataset already in ``out``.
    """
    source = read_source(fmt, src)
    notes = list(source.notes)
    splits = source.splits
    if class_map is not None:
        labels = Counter(b.label for anns in splits.values() for a in anns for b in a.boxes)
        notes += [f"--class-map: class {name!r} never occurs in {src}" for name in class_map.unused(labels)]
        splits = {name: class_map.apply(anns) for name, anns in splits.items()}
    clipped = {name: clip_to_image(anns) for name, anns in splits.items()}
    splits = {name: anns for name, (anns, _, _) in clipped.items()}
    moved = sum(n for _, n, _ in clipped.values())
    dropped = [d for _, _, ds in clipped.values() for d in ds]
    if moved:
        notes.append(f"clipped {moved} boxes to their image")
    if dropped:
        shown = "; ".join(dropped[:3]) + ("; ..." if len(dropped) > 3 else "")
        notes.append(f"dropped {len(dropped)} boxes lying wholly outside their image: {shown}")
    default: SplitMethod = "keep" if source.has_splits else "group" if source.has_groups else "random"
    method = split or default
    out_splits = resplit(splits, method, val_fraction, seed)
    written = write_kitti_dataset(out_splits, out, overwrite=overwrite)
    return ConvertReport(written, method, notes)
