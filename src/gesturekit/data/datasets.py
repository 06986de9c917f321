"""Torch datasets over KITTI directories, class folders and ``.gkpack`` packs (read by ``data.items``).

Everything is listed once at construction; ``__getitem__`` only decodes one image (from the
mapped pack bytes, or one file) and applies the transform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gesturekit.data.items import BoxTuple, CropItem, FrameItem, crop_items, frame_items
from gesturekit.data.transforms import pad_normalized
from gesturekit.errors import GesturekitError

DetectionTransform = Callable[
    [torch.Tensor, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]
]
ClassificationTransform = Callable[[torch.Tensor, BoxTuple], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]


def _require_items(items: Sequence[object], split: str, sources: Sequence[str | Path]) -> None:
    if not items:
        raise GesturekitError(f"no images of split {split!r} in {', '.join(map(str, sources))}")


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
