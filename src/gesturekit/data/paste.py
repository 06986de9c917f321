"""Copy-paste augmentation: hand crops pasted onto a detector training canvas as new boxes.

The detector's frames hold few small hands in poses other than the ones their datasets show;
tens of thousands of tight hand crops (e.g. HaGRID's) are cheap. Each pasted crop is flipped at
random, colour-jittered on its own, scaled to a random height and blended in with feathered
edges (a hard rectangle would teach the detector to find paste seams), where it does not cover a
labelled hand nor lie mostly on the black padding of the canvas; its box is a new target.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torchvision.transforms.v2 import functional as F

from gesturekit.config.specs import HandPaste, source_splits
from gesturekit.data.items import CropItem, crop_items
from gesturekit.errors import GesturekitError

PLACEMENT_TRIES = 10
"""Random positions tried per crop before giving up on it (all covered labelled hands)."""
MAX_COVER = 0.1
"""A position is rejected if the crop covers more than this fraction of a labelled box (or the
box more than this fraction of the crop)."""
MAX_PADDING = 0.5
"""A position is rejected if more than this fraction of it is the canvas's black padding."""


def feather_mask(height: int, width: int, feather: float) -> torch.Tensor:
    """Blend weights [H, W] in [0, 1]: 1 inside, ramping linearly to 0 over the border band
    ``feather * min(H, W)`` pixels wide (all ones when ``feather`` is 0)."""
    band = feather * min(height, width)
    if band <= 0:
        return torch.ones(height, width)

    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32) + 0.5
        return (torch.minimum(i, n - i) / band).clamp(max=1.0)

    return torch.minimum(ramp(height)[:, None], ramp(width)[None, :])


def _covers(box: torch.Tensor, boxes: torch.Tensor) -> bool:
    """Whether ``box`` [4] and any of ``boxes`` [N, 4] overlap by more than ``MAX_COVER`` of either."""
    if boxes.numel() == 0:
        return False
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    return bool(((inter > MAX_COVER * areas) | (inter > MAX_COVER * area)).any())


class HandPaster:
    """Pastes up to ``max_hands`` crops onto a uint8 canvas with probability ``probability``.

    Args:
        paste: the spec's ``augmentation.paste`` section (sources must be non-empty).
        label: the class index of pasted boxes.
        color: colour jitter applied to each crop on its own (uint8 [3, h, w] -> same).

    Raises:
        GesturekitError: no crop in the sources (naming them).
    """

    def __init__(self, paste: HandPaste, label: int, color: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.paste, self.label, self.color = paste, label, color
        self.items: list[CropItem] = [
            item for path, split in source_splits(paste.sources, paste.split) for item in crop_items(path, split)
        ]
        if not self.items:
            names = ", ".join(str(p) for p, _ in source_splits(paste.sources, paste.split))
            raise GesturekitError(f"augmentation.paste: no hand crops of split {paste.split!r} in {names}")

    def _crop(self) -> torch.Tensor:
        image, (x1, y1, x2, y2) = self.items[int(torch.randint(len(self.items), ()))].load()
        h, w = image.shape[-2:]
        x1, y1 = max(0, math.floor(x1)), max(0, math.floor(y1))
        x2, y2 = min(w, max(x1 + 1, math.ceil(x2))), min(h, max(y1 + 1, math.ceil(y2)))
        crop = image[:, y1:y2, x1:x2]
        return crop.flip(-1) if bool(torch.rand(()) < 0.5) else crop

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: image uint8 [3, S, S]; boxes float [N, 4] xyxy; labels int64 [N].
        Returns the image with pasted hands and the targets with their boxes appended."""
        if float(torch.rand(())) >= self.paste.probability:
            return image, boxes, labels
        canvas_h, canvas_w = image.shape[-2:]
        low, high = (math.log(v * canvas_h) for v in self.paste.height_range)
        image = image.clone()
        new_boxes = []
        for _ in range(int(torch.randint(1, self.paste.max_hands + 1, ()))):
            crop = self._crop()
            height = max(4, round(math.exp(float(torch.empty(()).uniform_(low, high)))))
            width = max(4, round(height * crop.shape[-1] / crop.shape[-2]))
            if height >= canvas_h or width >= canvas_w:
                continue
            taken = torch.cat([boxes.reshape(-1, 4), *new_boxes]) if new_boxes else boxes.reshape(-1, 4)
            for _ in range(PLACEMENT_TRIES):
                x = int(torch.randint(canvas_w - width + 1, ()))
                y = int(torch.randint(canvas_h - height + 1, ()))
                box = torch.tensor([[x, y, x + width, y + height]], dtype=torch.float32)
                padding = (image[:, y:y + height, x:x + width] == 0).all(dim=0).float().mean()
                if padding <= MAX_PADDING and not _covers(box[0], taken):
                    break
            else:
                continue
            patch = self.color(F.resize(crop, [height, width], antialias=True)).float()
            mask = feather_mask(height, width, self.paste.feather)
            region = image[:, y:y + height, x:x + width].float()
            image[:, y:y + height, x:x + width] = (patch * mask + region * (1 - mask)).round().to(image.dtype)
            new_boxes.append(box)
        if not new_boxes:
            return image, boxes, labels
        added = torch.cat(new_boxes)
        return (
            image,
            torch.cat([boxes.reshape(-1, 4).float(), added]),
            torch.cat([labels, torch.full((len(added),), self.label, dtype=labels.dtype)]),
        )
