"""The frames and hand crops of every data source (a ``.gkpack`` pack, a KITTI directory, a class-folder root),
listed as items that each load one image: what the torch datasets and the copy-paste augmentation read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gesturekit.data.pack import Pack, PackRecord, open_pack
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES, read_rgb

BoxTuple = tuple[float, float, float, float]


def _load_image(source: Pack | Path, index: int) -> torch.Tensor:
    """Record ``index`` of a pack, or the image file ``source``: uint8 [3, H, W]."""
    if isinstance(source, Pack):
        return source.image(index)
    return torch.from_numpy(read_rgb(source)).permute(2, 0, 1)


def _pack_records(path: Path, kind: str, split: str) -> tuple[Pack, list[PackRecord]]:
    """The records of ``split`` in the pack at ``path``, which must be of ``kind`` and hold that split."""
    pack = open_pack(path)
    if pack.kind != kind:
        raise GesturekitError(f"{path}: a {pack.kind} pack where a {kind} pack is needed")
    if split not in pack.splits:
        raise GesturekitError(
            f"{path}: no split {split!r} (splits: {', '.join(sorted(pack.splits)) or 'none'})"
        )
    return pack, pack.records(split)


@dataclass(frozen=True, slots=True)
class FrameItem:
    """One frame with its labelled boxes: a pack record or an image file of a KITTI directory."""

    source: Pack | Path
    index: int
    boxes: list[BoxTuple]
    labels: list[str]

    def load(self) -> torch.Tensor:
        """The uint8 image [3, H, W]."""
        return _load_image(self.source, self.index)


def frame_items(source: Path, split: str) -> list[FrameItem]:
    """The frames of ``split`` in a detection pack or a KITTI directory."""
    if source.suffix == ".gkpack":
        pack, records = _pack_records(source, "detection", split)
        return [FrameItem(pack, r.index, list(r.boxes), list(r.labels)) for r in records]
    if not source.is_dir():
        raise GesturekitError(f"{source}: not a KITTI directory or a .gkpack")
    from gesturekit.data.formats.kitti import read_kitti_dataset

    return [
        FrameItem(ann.image, -1, [(b.x1, b.y1, b.x2, b.y2) for b in ann.boxes], [b.label for b in ann.boxes])
        for ann in read_kitti_dataset(source, split)
    ]


@dataclass(frozen=True, slots=True)
class CropItem:
    """One hand crop: a pack record (crop with context and the hand box in it) or a tight crop file."""

    source: Pack | Path
    index: int
    box: BoxTuple | None
    label: str

    def load(self) -> tuple[torch.Tensor, BoxTuple]:
        """The uint8 image [3, H, W] and the hand box in it (the whole image for a tight crop)."""
        image = _load_image(self.source, self.index)
        box = self.box or (0.0, 0.0, float(image.shape[-1]), float(image.shape[-2]))
        return image, box


def crop_items(source: Path, split: str) -> list[CropItem]:
    """The hand crops of ``split`` in a classification pack or a class-folder root.

    A class-folder root holds ``<class>/*.jpg``; if it has a ``<split>/`` folder, that folder's
    classes are used, otherwise the root is used whole for any split.
    """
    if source.suffix == ".gkpack":
        pack, records = _pack_records(source, "classification", split)
        return [CropItem(pack, r.index, r.boxes[0], r.label) for r in records]
    if not source.is_dir():
        raise GesturekitError(f"{source}: not a class-folder root or a .gkpack")
    root = source / split if (source / split).is_dir() else source
    return [
        CropItem(path, -1, None, folder.name)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
