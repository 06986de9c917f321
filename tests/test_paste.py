"""Copy-paste augmentation: pasted crops become boxes, blend softly, avoid labelled hands and padding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from gesturekit.config.specs import DetectorSpec, HandPaste
from gesturekit.data.paste import HandPaster, feather_mask
from gesturekit.errors import GesturekitError


def crop_folder(root: Path, count: int = 4) -> Path:
    """Class folders of solid red crops, 30x20 (h x w)."""
    for label in ("fist", "palm"):
        (root / label).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (20, 30), (250, 10, 10)).save(root / label / f"{i}.jpg")
    return root


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def test_feather_mask_ramps_to_the_border() -> None:
    mask = feather_mask(20, 40, 0.25)  # a 5 px band
    assert mask.shape == (20, 40)
    assert (mask[5:15, 5:35] == 1).all()
    assert mask[0, 20] == pytest.approx(0.1) and mask[10, 0] == pytest.approx(0.1)
    assert (mask[:, :5].diff(dim=1) >= 0).all()
    assert (feather_mask(8, 8, 0.0) == 1).all()


def test_pasted_hands_become_boxes_and_leave_the_rest(tmp_path: Path) -> None:
    torch.manual_seed(0)
    paste = HandPaste(sources=[crop_folder(tmp_path / "crops")], probability=1.0, max_hands=3,
                      height_range=(0.2, 0.3), feather=0.0)
    paster = HandPaster(paste, label=2, color=identity)
    image = torch.full((3, 100, 100), 40, dtype=torch.uint8)
    image[:, :, 80:] = 0  # padding on the right
    hand = torch.tensor([[10.0, 10.0, 40.0, 40.0]])
    added_any = False
    for _ in range(20):
        out, boxes, labels = paster(image, hand, torch.tensor([0]))
        assert torch.equal(boxes[:1], hand) and labels[0] == 0
        new = boxes[1:]
        assert (labels[1:] == 2).all() and len(new) <= 3
        pasted = torch.zeros(100, 100, dtype=torch.bool)
        for x1, y1, x2, y2 in new.round().int().tolist():
            assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 100
            assert 20 <= y2 - y1 <= 30 and (y2 - y1) / (x2 - x1) == pytest.approx(1.5, abs=0.2)
            assert x1 < 80 - (x2 - x1) * 0.5  # at most half of it on the padding
            assert (out[0, y1:y2, x1:x2].float().mean() > 200)  # the red crop is there
            pasted[y1:y2, x1:x2] = True
            inter = max(0, min(x2, 40) - max(x1, 10)) * max(0, min(y2, 40) - max(y1, 10))
            assert inter <= 0.1 * 30 * 30  # the labelled hand stays visible
        assert torch.equal(out[:, ~pasted], image[:, ~pasted])
        added_any |= len(new) > 0
    assert added_any


def test_no_paste_below_probability(tmp_path: Path) -> None:
    paster = HandPaster(HandPaste(sources=[crop_folder(tmp_path / "crops")], probability=0.0), 0, identity)
    image = torch.full((3, 64, 64), 90, dtype=torch.uint8)
    out, boxes, labels = paster(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert out is image and boxes.shape == (0, 4) and labels.numel() == 0


def test_feathered_edges_blend(tmp_path: Path) -> None:
    torch.manual_seed(1)
    paste = HandPaste(sources=[crop_folder(tmp_path / "crops")], probability=1.0, max_hands=1,
                      height_range=(0.4, 0.4), feather=0.3)
    out, boxes, _ = HandPaster(paste, 0, identity)(torch.zeros(3, 100, 100, dtype=torch.uint8) + 20,
                                                    torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    x1, y1, x2, y2 = boxes[0].int().tolist()
    red = out[0, (y1 + y2) // 2]
    assert red[x1] < red[(x1 + x2) // 2] and red[(x1 + x2) // 2] > 230 and red[x1] < 120


def test_paste_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(GesturekitError, match="no hand crops"):
        HandPaster(HandPaste(sources=[tmp_path / "empty"]), 0, identity)
    crops = crop_folder(tmp_path / "crops")
    with pytest.raises(ValidationError, match="paste.label"):
        DetectorSpec.model_validate({"dataset": {"train": [str(crops)], "classes": ["hand"]},
                                     "augmentation": {"paste": {"sources": [str(crops)], "label": "palm"}}})
    with pytest.raises(ValidationError, match="height_range"):
        HandPaste(height_range=(0.3, 0.1))


def test_detection_train_transform_pastes_with_the_spec_label(tmp_path: Path) -> None:
    from gesturekit.config.specs import DetectionAugmentation
    from gesturekit.data.transforms import detection_train_transform

    torch.manual_seed(0)
    aug = DetectionAugmentation.model_validate(
        {"input_size": 96, "scale_range": [1, 1], "translate": 0,
         "paste": {"sources": [str(crop_folder(tmp_path / "crops"))], "probability": 1.0, "label": "hand"}})
    transform = detection_train_transform(aug, ["face", "hand"])
    image = torch.full((3, 96, 96), 128, dtype=torch.uint8)
    _, target = transform(image, {"boxes": torch.tensor([[5.0, 5.0, 25.0, 25.0]]), "labels": torch.tensor([0])})
    assert len(target["boxes"]) >= 2 and target["labels"][0] == 0 and (target["labels"][1:] == 1).all()
