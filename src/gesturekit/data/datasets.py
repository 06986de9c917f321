"""Torch datasets over KITTI directories, class folders and ``.gkpack`` packs.

Everything is listed once at construction; ``__getitem__`` only decodes one image (from the
mapped pack bytes, or one file) and applies the transform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gesturekit.data.pack import Pack, PackRecord, open_pack
from gesturekit.data.transforms import pad_normalized
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES, read_rgb

BoxTuple = tuple[float, float, float, float]
DetectionTransform = Callable[
    [torch.Tensor, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]
]
ClassificationTransform = Callable[[torch.Tensor, BoxTuple], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]


def _load_image(source: Pack | Path, index: int) -> torch.Tensor:
    """Record ``index`` of a pack, or the image file ``source``: uint8 [3, H, W]."""
    if isinstance(source, Pack):
        return source.image(index)
    return torch.from_numpy(read_rgb(source)).permute(2, 0, 1)


def _require_items(items: Sequence[object], split: str, sources: Sequence[str | Path]) -> None:
    if not items:
        raise GesturekitError(f"no images of split {split!r} in {', '.join(map(str, sources))}")


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


def _class_index(label: str, classes: Sequence[str], class_map: Mapping[str, str], source: Path) -> int:
    name = class_map.get(label, label)
    if name not in classes:
        mapped = f" (mapped from {label!r})" if name != label else ""
        raise GesturekitError(
            f"{source}: class {name!r}{mapped} is not one of {list(classes)}; add it to classes or class_map"
        )
    return classes.index(name)


class DetectionDataset(Dataset):
    """Frames with hand boxes from KITTI directories or detection packs.

    Args:
        sources: KITTI dataset directories (``images/``, ``labels/``, ``splits/``) or ``.gkpack``.
        split: the split to read from every source.
        classes: class names; a label is its index here.
        class_map: renames labels before lookup; labels not in it keep their name.
        transform: ``(uint8 image [3, H, W], target) -> (image, target)``, e.g.
            ``detection_train_transform``; the target holds ``boxes`` float32 [N, 4] xyxy pixels
            and ``labels`` int64 [N].

    Raises:
        GesturekitError: a label outside ``classes`` (naming the source), or no image at all.
    """

    def __init__(
        self,
        sources: Sequence[str | Path],
        split: str,
        classes: Sequence[str],
        class_map: Mapping[str, str] | None,
        transform: DetectionTransform,
    ) -> None:
        self.classes = list(classes)
        self.transform = transform
        self._items: list[tuple[FrameItem, torch.Tensor, torch.Tensor]] = []
        for source in map(Path, sources):
            for item in frame_items(source, split):
                ids = [_class_index(label, self.classes, class_map or {}, source) for label in item.labels]
                boxes = torch.tensor(item.boxes, dtype=torch.float32).reshape(-1, 4)
                self._items.append((item, boxes, torch.tensor(ids, dtype=torch.int64)))
        _require_items(self._items, split, sources)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item, boxes, labels = self._items[i]
        return self.transform(item.load(), {"boxes": boxes.clone(), "labels": labels.clone()})


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


def detection_collate(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Batch normalised images [B, 3, H, W] (``pad_normalized``: validation inputs differ in size);
    targets stay a list (box counts differ)."""
    images, targets = zip(*batch)
    return pad_normalized(images), list(targets)


class ClassificationDataset(Dataset):
    """Hand crops from class folders or classification packs.

    Sources are read by ``crop_items``: in a class-folder root a crop is tight (the hand box is the
    whole image); a pack record carries its crop with context and the hand box in it.

    Args:
        sources: class-folder roots or classification ``.gkpack`` files.
        split: the split to read.
        classes: class names; a label is its index here.
        class_map: renames folder names / pack labels before lookup; others keep their name.
        transform: ``(uint8 image [3, H, W], hand box xyxy) -> float image [3, S, S]``, e.g.
            ``classification_train_transform``.

    Attributes:
        targets: the label of every item, for class weighting and balanced sampling.
    """

    def __init__(
        self,
        sources: Sequence[str | Path],
        split: str,
        classes: Sequence[str],
        class_map: Mapping[str, str] | None,
        transform: ClassificationTransform,
    ) -> None:
        self.classes = list(classes)
        self.transform = transform
        self._items: list[CropItem] = []
        self.targets: list[int] = []
        for source in map(Path, sources):
            for item in crop_items(source, split):
                self._items.append(item)
                self.targets.append(_class_index(item.label, self.classes, class_map or {}, source))
        _require_items(self._items, split, sources)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | dict[str, Any]]:
        """``(image, label)``, or ``(image, {"label", "box"})`` when the transform also returns the box."""
        image, box = self._items[i].load()
        out = self.transform(image, box)
        if isinstance(out, tuple):
            return out[0], {"label": self.targets[i], "box": out[1]}
        return out, self.targets[i]


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
