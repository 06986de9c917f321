"""Letterbox math, detection augmentation that keeps boxes on the hand, the classifier crop convention."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from gesturekit.config.specs import (
    ClassificationAugmentation,
    ColorJitter,
    CropConvention,
    DetectionAugmentation,
)
from gesturekit.data.transforms import (
    MEAN,
    STD,
    classification_eval_transform,
    classification_train_transform,
    crop_roi,
    detection_eval_transform,
    detection_train_transform,
    frame_scale,
    letterbox,
    letterbox_geometry,
    normalize,
)

NO_COLOR = ColorJitter(brightness=0, contrast=0, saturation=0, hue=0)


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Normalised [3, H, W] -> values in [0, 1]."""
    return image * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


def scene(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """A black uint8 image with white rectangles (the "hands") filling ``boxes``."""
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    for x1, y1, x2, y2 in boxes:
        image[:, y1:y2, x1:x2] = 255
    return image


def test_letterbox_square_math() -> None:
    image = torch.full((3, 300, 400), 200, dtype=torch.uint8)
    out, scale = letterbox(image, 200)
    assert scale == 0.5 and out.shape == (3, 200, 200) and out.dtype == torch.uint8
    assert (out[:, :150, :] == 200).all() and (out[:, 150:, :] == 0).all()  # zero padding at the bottom
    tall, scale = letterbox(torch.full((2, 3, 90, 30), 1.0), 60)
    assert scale == pytest.approx(60 / 90) and tall.shape == (2, 3, 60, 60)
    assert (tall[..., :, :20] == 1).all() and (tall[..., :, 20:] == 0).all()  # padding on the right


def test_letterbox_stride_math() -> None:
    out, scale = letterbox(torch.ones(3, 120, 250, dtype=torch.uint8), 160, stride=32, square=False)
    assert scale == pytest.approx(0.8)  # 120x250 holds 30,000 px; 160x120 holds 19,200 = 0.8^2 of them
    assert out.shape == (3, 96, 224)  # 96 x 200, the columns padded to 224
    assert (out[..., 200:] == 0).all() and (out[..., :200] == 1).all()
    small, scale = letterbox(torch.ones(3, 15, 20, dtype=torch.uint8), 40, square=False)
    assert scale == 2.0 and small.shape == (3, 32, 64)  # upscaled to 30 x 40


@pytest.mark.parametrize("height, width", [(480, 640), (640, 480), (360, 640), (1080, 620), (512, 512), (512, 1138)])
def test_frame_scale_keeps_the_pixels_of_a_4_3_frame(height: int, width: int) -> None:
    scale = frame_scale(height, width, 448)
    assert height * width * scale**2 == pytest.approx(448 * 336)  # every aspect ratio: the pixels of 448x336
    if sorted((height, width)) == [480, 640]:
        assert scale == pytest.approx(448 / 640)  # a 4:3 frame as "long side 448"


def test_frame_scale_caps_the_long_side_of_extreme_frames() -> None:
    assert frame_scale(100, 1000, 448) * 1000 == pytest.approx(448 * 4 / 3)  # 10:1 would be 1,227 px long
    assert frame_scale(1000, 100, 448) * 1000 == pytest.approx(448 * 4 / 3)


def test_normalize() -> None:
    out = normalize(torch.full((3, 2, 2), 255, dtype=torch.uint8))
    assert out.dtype == torch.float32
    assert out[:, 0, 0].tolist() == pytest.approx([(1 - m) / s for m, s in zip(MEAN, STD)])


def test_letterbox_geometry_is_letterbox_s() -> None:
    assert letterbox_geometry(120, 250, 160, stride=32, square=False) == (96, 200, 96, 224, pytest.approx(0.8))
    assert letterbox_geometry(300, 400, 200) == (150, 200, 200, 200, 0.5)


def test_detection_eval_scales_boxes() -> None:
    image = scene(300, 400, [(100, 60, 180, 140)])
    out, target = detection_eval_transform(200)(
        image, {"boxes": torch.tensor([[100.0, 60, 180, 140]]), "labels": torch.tensor([1])}
    )
    assert out.shape == (3, 160, 224) and out.dtype == torch.float32  # 150x200 (frame_scale 0.5), padded to 32s
    assert target["boxes"].tolist() == [[50.0, 30.0, 90.0, 70.0]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [1]
    assert denormalize(out)[:, 32:68, 52:88].min() > 0.95


def test_detection_flip_maps_x1_to_width_minus_x2() -> None:
    aug = DetectionAugmentation(
        input_size=200, hflip_probability=1.0, scale_range=(1.0, 1.0), translate=0.0, color_jitter=NO_COLOR
    )
    image = scene(300, 400, [(100, 60, 180, 140)])
    out, target = detection_train_transform(aug)(
        image, {"boxes": torch.tensor([[100.0, 60, 180, 140]]), "labels": torch.tensor([0])}
    )
    assert target["boxes"].tolist() == [pytest.approx([200 - 90, 30, 200 - 50, 70], abs=1e-4)]
    assert denormalize(out)[:, 32:68, 112:148].min() > 0.95


def test_detection_augmentation_keeps_boxes_on_the_hands() -> None:
    torch.manual_seed(0)
    hands = [(20, 25, 55, 75), (150, 60, 190, 115)]
    image = scene(144, 256, hands)
    transform = detection_train_transform(DetectionAugmentation(input_size=128))
    kept = []
    for _ in range(15):
        out, target = transform(
            image, {"boxes": torch.tensor(hands, dtype=torch.float32), "labels": torch.tensor([0, 1])}
        )
        assert out.shape == (3, 128, 128) and out.dtype == torch.float32
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and len(boxes) == len(labels)
        assert ((boxes >= 0) & (boxes <= 128)).all()
        gray = denormalize(out).mean(0)
        for x1, y1, x2, y2 in boxes.round().int().tolist():
            assert gray[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].mean() > 0.55, "box drifted off its hand"
        kept.append(len(boxes))
    assert max(kept) == 2 and sum(kept) >= 18


def test_detection_drops_boxes_pushed_off_the_canvas() -> None:
    torch.manual_seed(1)
    aug = DetectionAugmentation(
        input_size=128, hflip_probability=0.0, scale_range=(1.0, 1.0), translate=0.45, color_jitter=NO_COLOR
    )
    transform = detection_train_transform(aug)
    image = scene(128, 128, [(100, 50, 126, 80)])
    kept = [
        len(
            transform(image, {"boxes": torch.tensor([[100.0, 50, 126, 80]]), "labels": torch.tensor([0])})[1][
                "boxes"
            ]
        )
        for _ in range(30)
    ]
    assert 0 < sum(kept) < 30  # dropped whenever a translation pushes the hand mostly off
    torch.manual_seed(1)
    clipped = detection_train_transform(aug.model_copy(update={"min_visible": 0.0}))
    kept_clipped = [clipped(image, {"boxes": torch.tensor([[100.0, 50, 126, 80]]), "labels": torch.tensor([0])})[1]
                    for _ in range(30)]
    assert sum(len(t["boxes"]) for t in kept_clipped) > sum(kept)  # visible slivers keep their label
    for target in kept_clipped:
        assert ((target["boxes"] >= 0) & (target["boxes"] <= 128)).all()


def test_classification_eval_cuts_the_documented_region() -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 200, 300), dtype=torch.uint8)
    box = (250.0, 20.0, 290.0, 90.0)
    crop = CropConvention(margin_px=4, enlarge_ratio=1.5, square=True)
    # centre (270, 55), enlarged 60 x 105, squared to 105, margin 4: x 213.5..326.5, y -1.5..111.5, clipped to
    # x2 <= W - 1 and y1 >= 0, as at runtime
    x1, y1, x2, y2 = 214, 0, 299, 112
    roi = crop_roi(image, box, crop)
    assert torch.equal(roi, image[:, y1:y2, x1:x2])
    out = classification_eval_transform(64, crop)(image, box)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert torch.allclose(out, normalize(F.resize(image[:, y1:y2, x1:x2], [64, 64], antialias=True)))


def test_classification_train_jitters_the_enlarge_ratio() -> None:
    image = torch.randint(0, 256, (3, 200, 300), dtype=torch.uint8)
    box = (120.0, 60.0, 160.0, 120.0)
    crop = CropConvention(enlarge_ratio=1.3)
    still = ClassificationAugmentation(
        input_size=48,
        hflip_probability=0,
        scale_range=(1.0, 1.0),
        translate=0,
        rotation_degrees=0,
        color_jitter=NO_COLOR,
    )
    out = classification_train_transform(still, crop)(image, box)
    assert torch.allclose(out, classification_eval_transform(48, crop)(image, box))
    doubled = still.model_copy(update={"scale_range": (2.0, 2.0)})
    out = classification_train_transform(doubled, crop)(image, box)
    wide = crop_roi(image, box, crop, enlarge_ratio=2.6)
    assert torch.allclose(out, normalize(F.resize(wide, [48, 48], antialias=True)))
    torch.manual_seed(0)
    default = classification_train_transform(ClassificationAugmentation(input_size=48), crop)
    outs = [default(image, box) for _ in range(3)]
    assert all(o.shape == (3, 48, 48) for o in outs) and not torch.allclose(outs[0], outs[1])


def test_classification_train_with_box_returns_the_hand_box_in_the_crop() -> None:
    image = scene(200, 300, [(120, 60, 150, 120)])
    box = (120.0, 60.0, 150.0, 120.0)  # 30 x 60: the square crop is 2 x 60 = 120 px, box centred
    crop = CropConvention(margin_px=0, enlarge_ratio=2.0, square=True)
    still = ClassificationAugmentation(input_size=60, hflip_probability=0, scale_range=(1.0, 1.0), translate=0,
                                       rotation_degrees=0, color_jitter=NO_COLOR)
    out, target = classification_train_transform(still, crop, with_box=True)(image, box)
    assert torch.allclose(out, classification_train_transform(still, crop)(image, box))
    assert torch.allclose(target, torch.tensor([0.375, 0.25, 0.625, 0.75]))
    bright = denormalize(out)[0] > 0.5  # the white hand is where the target says
    rows, cols = bright.nonzero(as_tuple=True)
    assert abs(cols.min().item() / 60 - 0.375) < 0.03 and abs(rows.max().item() / 60 - 0.75) < 0.03
    shifted = classification_train_transform(still.model_copy(update={"translate": 0.5}), crop, with_box=True)
    flipped = classification_train_transform(still.model_copy(update={"hflip_probability": 1.0}), crop, with_box=True)
    torch.manual_seed(1)
    out, target = shifted(image, box)
    assert not torch.allclose(target, torch.tensor([0.375, 0.25, 0.625, 0.75]))  # the crop moved, not the hand
    bright = denormalize(out)[0] > 0.5
    rows, cols = bright.nonzero(as_tuple=True)
    assert abs(cols.min().item() / 60 - target[0].item()) < 0.03
    assert abs(rows.min().item() / 60 - target[1].item()) < 0.03
    off_centre = (100.0, 60.0, 130.0, 120.0)  # the box left of the hand's centre: the flip mirrors the target
    _, plain = classification_train_transform(still, crop, with_box=True)(image, off_centre)
    _, mirrored = flipped(image, off_centre)
    assert torch.allclose(mirrored, torch.stack([1 - plain[2], plain[1], 1 - plain[0], plain[3]]), atol=1e-6)
