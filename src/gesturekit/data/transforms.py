"""Preprocessing and augmentation presets (torchvision.transforms.v2; boxes follow the geometry).

``letterbox`` + ``normalize`` is the detector preprocessing of evaluation; the runtime computes it without
torch (``runtime.preprocess``: Pillow's resize, within one level of 255 of torchvision's).
``crop_roi`` is the classifier's cut of a hand box (the crop convention of ``data.crops``).
The geometry and normalisation constants live in ``data.geometry`` (torch-free, for the runtime).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from gesturekit.config.specs import (
    ClassificationAugmentation,
    ColorJitter,
    CropConvention,
    DetectionAugmentation,
)
from gesturekit.data.crops import widen_box
from gesturekit.data.geometry import (  # noqa: F401  (MEAN, STD, PAD_STRIDE, pad_to_stride, frame_scale: re-exported)
    MEAN,
    PAD_STRIDE,
    STD,
    frame_scale,
    letterbox_geometry,
    pad_to_stride,
)

Target = dict[str, torch.Tensor]


_OFFSET = torch.tensor([m / s for m, s in zip(MEAN, STD)]).view(3, 1, 1)


def keep_frame(image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """The identity transform: a sample as its dataset loads it (for augmentations that mix samples)."""
    return image, target


def normalize(image: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] (or float in [0, 1]) -> float32 normalised with ``MEAN``/``STD``."""
    return F.normalize(F.to_dtype(image, torch.float32, scale=True), MEAN, STD)


def pad_normalized(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Normalised float images [3, h, w] of any sizes -> one batch [B, 3, H, W], each padded at the bottom
    and right to the largest height and width with normalised black (as ``letterbox`` pads)."""
    height, width = max(i.shape[-2] for i in images), max(i.shape[-1] for i in images)
    if all(tuple(i.shape[-2:]) == (height, width) for i in images):
        return torch.stack(list(images))
    batch = (-_OFFSET).expand(len(images), 3, height, width).clone()
    for canvas, image in zip(batch, images):
        canvas[:, :image.shape[-2], :image.shape[-1]] = image
    return batch


def letterbox(
    image: torch.Tensor, size: int, stride: int = PAD_STRIDE, square: bool = True
) -> tuple[torch.Tensor, float]:
    """Resize (aspect kept), then zero-pad bottom and right (``letterbox_geometry``).

    Args:
        image: [..., C, H, W], uint8 or float.
        size: the input size: the long side with ``square``, else the size of ``frame_scale``.
        stride: with ``square=False``, pad each side to a multiple of it.
        square: long side ``size``, padded to a ``size x size`` canvas.

    Returns:
        The padded image [..., C, H', W'] (same dtype) and ``scale``: a point ``p`` of the input
        is at ``p * scale`` in the output, so output boxes map back by dividing by ``scale``.
    """
    height, width = image.shape[-2:]
    new_h, new_w, padded_h, padded_w, scale = letterbox_geometry(height, width, size, stride, square)
    out = F.resize(image, [new_h, new_w], antialias=True)
    return F.pad(out, [0, 0, padded_w - new_w, padded_h - new_h], fill=0), scale


def _color_jitter(cj: ColorJitter) -> v2.ColorJitter:
    return v2.ColorJitter(cj.brightness, cj.contrast, cj.saturation, cj.hue)


def _boxes(target: Target, canvas_size: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    """Unclamped boxes so that augmentation can tell how much of a box left the canvas."""
    return tv_tensors.BoundingBoxes(
        target["boxes"].float().reshape(-1, 4), format="XYXY", canvas_size=canvas_size, clamping_mode=None
    )


def _finish(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Target]:
    return normalize(image.as_subclass(torch.Tensor)), {
        "boxes": boxes.as_subclass(torch.Tensor).float().reshape(-1, 4),
        "labels": labels.as_subclass(torch.Tensor).long(),
    }


class _DetectionEval:
    def __init__(self, input_size: int) -> None:
        self.size = input_size

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        height, width = image.shape[-2:]
        out, _ = letterbox(image, self.size, square=False)
        new_h, new_w, *_ = letterbox_geometry(height, width, self.size, square=False)
        factor = torch.tensor([new_w / width, new_h / height] * 2)
        return _finish(out, target["boxes"].float().reshape(-1, 4) * factor, target["labels"])


class _DetectionTrain:
    def __init__(self, aug: DetectionAugmentation, classes: Sequence[str]) -> None:
        self.size, self.min_visible = aug.input_size, aug.min_visible
        self.color = _color_jitter(aug.color_jitter)
        self.paste = None
        if aug.paste.sources:
            from gesturekit.data.paste import HandPaster

            self.paste = HandPaster(aug.paste, list(classes).index(aug.paste.label), self.color)
        self.geometry = v2.Compose(
            [
                v2.RandomAffine(
                    degrees=0,
                    translate=(aug.translate, aug.translate),
                    scale=aug.scale_range,
                    interpolation=InterpolationMode.BILINEAR,
                    fill=0,
                ),
                v2.RandomHorizontalFlip(aug.hflip_probability),
            ]
        )
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=2.0, min_area=4.0)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        height, width = image.shape[-2:]
        new_h, new_w, *_ = letterbox_geometry(height, width, self.size)
        boxes = F.resize(_boxes(target, (height, width)), [new_h, new_w])
        image = self.color(F.resize(tv_tensors.Image(image), [new_h, new_w], antialias=True))
        pad = [0, 0, self.size - new_w, self.size - new_h]
        image, boxes = F.pad(image, pad, fill=0), F.pad(boxes, pad)
        image, boxes = self.geometry(image, boxes)
        boxes, labels = _drop_truncated(boxes, target["labels"], self.min_visible)
        image, out = self.sanitize(image, {"boxes": boxes, "labels": labels})
        image, boxes, labels = image.as_subclass(torch.Tensor), out["boxes"], out["labels"]
        if self.paste is not None:
            image, boxes, labels = self.paste(image, boxes.as_subclass(torch.Tensor), labels)
        return _finish(image, boxes, labels)


def _drop_truncated(
    boxes: tv_tensors.BoundingBoxes, labels: torch.Tensor, min_visible: float
) -> tuple[tv_tensors.BoundingBoxes, torch.Tensor]:
    """Clamp boxes to the canvas; drop those with less than ``min_visible`` of their area on it."""
    height, width = boxes.canvas_size
    raw = boxes.as_subclass(torch.Tensor)
    clamped = torch.stack(
        [
            raw[:, 0].clamp(0, width),
            raw[:, 1].clamp(0, height),
            raw[:, 2].clamp(0, width),
            raw[:, 3].clamp(0, height),
        ],
        dim=1,
    )
    area = (raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1])
    visible = (clamped[:, 2] - clamped[:, 0]) * (clamped[:, 3] - clamped[:, 1])
    keep = (area > 0) & (visible >= min_visible * area) & (visible > 0)
    return tv_tensors.wrap(clamped[keep], like=boxes, clamping_mode="soft"), labels[keep]


def detection_train_transform(aug: DetectionAugmentation, classes: Sequence[str] = ("hand",)) -> _DetectionTrain:
    """Detector training augmentation: ``(image, target) -> (image, target)``.

    Letterbox into the ``input_size`` square canvas (colour jitter before the padding), random scale
    (``aug.scale_range``) and translation (``aug.translate`` of the canvas) of the image in it,
    horizontal flip; boxes follow, clipped to the canvas; those with less than ``aug.min_visible``
    of their area left on it are dropped with their labels.
    With ``aug.paste.sources``, hand crops are then pasted in as boxes of class ``aug.paste.label``
    (an entry of ``classes``; see ``data.paste``).

    Input: uint8 image [3, H, W]; target ``boxes`` [N, 4] xyxy pixels, ``labels`` int64 [N].
    Output: float32 image [3, S, S] normalised; target ``boxes`` float32 [M, 4] xyxy in canvas
    pixels, ``labels`` int64 [M] (``M <= N`` without pasting).
    """
    return _DetectionTrain(aug, classes)


def detection_eval_transform(input_size: int) -> _DetectionEval:
    """Detector validation preprocessing, the runtime's: ``letterbox`` by ``frame_scale`` (each side padded
    to ``PAD_STRIDE``) + ``normalize``; boxes scaled with it. Frames of different shapes give inputs of
    different sizes, which ``detection_collate`` pads to one batch."""
    return _DetectionEval(input_size)


def roi_region(
    image: torch.Tensor, box: Sequence[float], crop: CropConvention, enlarge_ratio: float | None = None
) -> tuple[int, int, int, int]:
    """The classifier's region ``(x1, y1, x2, y2)`` of a hand box in ``image`` [..., C, H, W]:
    ``widen_box`` with the crop convention (``enlarge_ratio`` overrides ``crop.enlarge_ratio``)."""
    height, width = image.shape[-2:]
    ratio = crop.enlarge_ratio if enlarge_ratio is None else enlarge_ratio
    return widen_box(tuple(box), (width, height), crop.margin_px, ratio, crop.square)


def crop_roi(
    image: torch.Tensor, box: Sequence[float], crop: CropConvention, enlarge_ratio: float | None = None
) -> torch.Tensor:
    """Cut the classifier's region of a hand box: ``image[..., y1:y2, x1:x2]`` of its ``roi_region``.

    Args:
        image: [..., C, H, W].
        box: ``(x1, y1, x2, y2)`` of the hand in pixels of ``image``.
        crop: the crop convention (margin, enlarge ratio, square).
        enlarge_ratio: overrides ``crop.enlarge_ratio`` (training jitters it).
    """
    x1, y1, x2, y2 = roi_region(image, box, crop, enlarge_ratio)
    return image[..., y1:y2, x1:x2]


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


class _ClassificationEval:
    def __init__(self, input_size: int, crop: CropConvention) -> None:
        self.size, self.crop = input_size, crop

    def __call__(self, image: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
        roi = crop_roi(image, box, self.crop)
        return normalize(F.resize(roi, [self.size, self.size], antialias=True))


class _ClassificationTrain:
    def __init__(self, aug: ClassificationAugmentation, crop: CropConvention, with_box: bool = False) -> None:
        self.aug, self.crop, self.with_box = aug, crop, with_box
        self.augment = v2.Compose(
            [
                v2.RandomHorizontalFlip(aug.hflip_probability),
                v2.RandomRotation(aug.rotation_degrees, interpolation=InterpolationMode.BILINEAR, fill=0),
                _color_jitter(aug.color_jitter),
            ]
        )

    def __call__(self, image: torch.Tensor, box: Sequence[float]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x1, y1, x2, y2 = (float(v) for v in box)
        t = self.aug.translate
        dx, dy = _uniform(-t, t) * (x2 - x1), _uniform(-t, t) * (y2 - y1)
        ratio = self.crop.enlarge_ratio * _uniform(*self.aug.scale_range)
        rx1, ry1, rx2, ry2 = roi_region(image, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), self.crop, ratio)
        size = self.aug.input_size
        resized = tv_tensors.Image(F.resize(image[..., ry1:ry2, rx1:rx2], [size, size], antialias=True))
        if not self.with_box:
            return normalize(self.augment(resized).as_subclass(torch.Tensor))
        sx, sy = size / (rx2 - rx1), size / (ry2 - ry1)
        target = tv_tensors.BoundingBoxes([[(x1 - rx1) * sx, (y1 - ry1) * sy, (x2 - rx1) * sx, (y2 - ry1) * sy]],
                                          format="XYXY", canvas_size=(size, size))
        out, target = self.augment(resized, target)
        return normalize(out.as_subclass(torch.Tensor)), target.as_subclass(torch.Tensor)[0].float() / size


def classification_train_transform(
    aug: ClassificationAugmentation, crop: CropConvention, with_box: bool = False
) -> _ClassificationTrain:
    """Classifier training augmentation: ``(image, hand_box) -> image``, or with ``with_box``
    ``-> (image, box)``, the hand box in the augmented crop as fractions of its size (xyxy; the
    regression target of a box head; flip and rotation move it as they move the image).

    The crop convention with its enlarge ratio multiplied by a random factor in
    ``aug.scale_range`` and the box shifted by up to ``aug.translate`` of its size (``crop_roi``,
    clipped to the frame as at runtime), resized to ``input_size`` square, then horizontal flip,
    rotation and colour jitter.

    Input: uint8 image [3, H, W] and the hand box ``(x1, y1, x2, y2)`` in its pixels.
    Output: float32 [3, S, S] normalised.
    """
    return _ClassificationTrain(aug, crop, with_box)


def classification_eval_transform(input_size: int, crop: CropConvention) -> _ClassificationEval:
    """Classifier evaluation preprocessing: ``crop_roi`` exactly per ``crop``, resize, ``normalize``."""
    return _ClassificationEval(input_size, crop)
