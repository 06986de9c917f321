"""Mosaic augmentation: four frames tiled around a centre, their boxes following their pixels."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from gesturekit.config.specs import DetectionAugmentation
from gesturekit.data.mosaic import MosaicDataset, mosaic
from gesturekit.data.transforms import Target, detection_train_transform, keep_frame

SHAPES = [(100, 200), (300, 150), (64, 64), (120, 160)]


def painted_frame(k: int, height: int, width: int) -> tuple[torch.Tensor, Target]:
    """A frame of value 10 whose box (a third of the frame, centred) is painted 100 + k."""
    image = torch.full((3, height, width), 10, dtype=torch.uint8)
    x1, y1, x2, y2 = width // 3, height // 3, 2 * width // 3, 2 * height // 3
    image[:, y1:y2, x1:x2] = 100 + k
    return image, {"boxes": torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32), "labels": torch.tensor([k])}


class Frames(Dataset):
    def __len__(self) -> int:
        return len(SHAPES)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        return painted_frame(i, *SHAPES[i])


@pytest.mark.parametrize("centre", [(80.0, 80.0), (45.3, 112.8), (118.0, 41.0)])
def test_each_box_lands_on_its_frame_s_pixels_in_its_quadrant(centre: tuple[float, float]) -> None:
    size = 160
    canvas, target = mosaic([painted_frame(k, *shape) for k, shape in enumerate(SHAPES)], size, centre)
    assert canvas.shape == (3, size, size) and canvas.dtype == torch.uint8
    assert target["labels"].tolist() == [0, 1, 2, 3]
    cx, cy = round(centre[0]), round(centre[1])
    checked = 0
    for k, box in enumerate(target["boxes"].tolist()):
        x1, y1, x2, y2 = (round(v) for v in box)
        quadrant_x = (0, cx) if k % 2 == 0 else (cx, size)  # frames 0, 2 left of the centre
        quadrant_y = (0, cy) if k < 2 else (cy, size)  # frames 0, 1 above it
        edge = 3  # resizing blurs the painted box's edges over a pixel or two (frame 2 is upscaled 2.5x)
        xs = range(max(x1, quadrant_x[0]) + edge, min(x2, quadrant_x[1]) - edge)
        ys = range(max(y1, quadrant_y[0]) + edge, min(y2, quadrant_y[1]) - edge)
        if len(xs) and len(ys):  # the visible part of the box shows the painted box of frame k
            assert (canvas[0, ys.start:ys.stop, xs.start:xs.stop] == 100 + k).all()
            checked += 1
    assert checked >= 2
    assert (canvas[:, cy:, cx:] != 0).any() and (canvas[:, :cy, :cx] != 0).any()


def test_the_mosaic_needs_four_frames() -> None:
    with pytest.raises(ValueError, match="expected 4 frames"):
        mosaic([painted_frame(0, 10, 10)] * 3, 32, (16.0, 16.0))


def test_dataset_mixes_the_share_it_is_given_and_then_transforms() -> None:
    torch.manual_seed(0)
    always, never = MosaicDataset(Frames(), keep_frame, 1.0, 96), MosaicDataset(Frames(), keep_frame, 0.0, 96)
    assert len(always) == len(never) == len(SHAPES)
    for i in range(len(SHAPES)):
        image, target = never[i]
        expected_image, expected = painted_frame(i, *SHAPES[i])
        assert torch.equal(image, expected_image) and torch.equal(target["boxes"], expected["boxes"])
        image, target = always[i]
        assert image.shape == (3, 96, 96) and len(target["labels"]) == 4 and target["labels"][0] == i
    aug = DetectionAugmentation(input_size=96, mosaic=1.0)
    image, target = MosaicDataset(Frames(), detection_train_transform(aug, ["a", "b", "c", "d"]), 1.0, 96)[0]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32  # the training transform ran after it
    boxes = target["boxes"]
    assert ((boxes >= 0) & (boxes <= 96)).all() and 1 <= len(boxes) <= 4  # clipped, those mostly cut off dropped
