"""Torch datasets over KITTI directories, class folders and packs: shapes, dtypes, labels, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import kitti_line, make_image, write_kitti
from torch.utils.data import DataLoader

from gesturekit.config.specs import ClassificationAugmentation, CropConvention, DetectionAugmentation
from gesturekit.data.datasets import ClassificationDataset, DetectionDataset, detection_collate
from gesturekit.data.formats.kitti import read_kitti_splits
from gesturekit.data.pack import (
    build_classification_pack,
    build_detection_pack,
    class_folder_sources,
    frame_sources,
)
from gesturekit.data.transforms import (
    classification_eval_transform,
    classification_train_transform,
    detection_eval_transform,
    detection_train_transform,
    normalize,
)
from gesturekit.errors import GesturekitError


@pytest.fixture
def kitti(tmp_path: Path) -> Path:
    labels = {
        "a.jpg": [kitti_line("hand", 4, 4, 20, 30), kitti_line("left_hand", 30, 10, 50, 40)],
        "b.jpg": [kitti_line("hand", 10, 10, 40, 40)],
        "c.jpg": [],
    }
    return write_kitti(
        tmp_path / "kitti", labels, {"train": ["a.jpg", "c.jpg"], "val": ["b.jpg"]}, size=(64, 48)
    )


@pytest.fixture
def det_pack(kitti: Path, tmp_path: Path) -> Path:
    out = tmp_path / "det.gkpack"
    build_detection_pack(read_kitti_splits(kitti), out, 32, workers=0, progress=False)
    return out


def test_detection_dataset_from_kitti_and_pack(kitti: Path, det_pack: Path) -> None:
    transform = detection_train_transform(DetectionAugmentation(input_size=64))
    ds = DetectionDataset([kitti, det_pack], "train", ["hand", "other"], {"left_hand": "other"}, transform)
    assert len(ds) == 4
    image, target = ds[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
    assert target["labels"].dtype == torch.int64 and set(target["labels"].tolist()) <= {0, 1}

    raw = DetectionDataset(
        [kitti, det_pack],
        "train",
        ["hand", "other"],
        {"left_hand": "other"},
        lambda image, target: (image, target),
    )
    for i, scale in ((0, 1.0), (2, 0.5)):  # the same frame from the directory and from the pack (halved)
        image, target = raw[i]
        assert image.dtype == torch.uint8 and image.shape == (3, round(48 * scale), round(64 * scale))
        assert target["boxes"].tolist() == [
            [v * scale for v in b] for b in [[4, 4, 20, 30], [30, 10, 50, 40]]
        ]
        assert target["labels"].tolist() == [0, 1]
    assert raw[1][1]["boxes"].shape == (0, 4) and raw[1][1]["labels"].shape == (0,)

    loader = DataLoader(
        DetectionDataset(
            [det_pack], "val", ["hand", "other"], {"left_hand": "other"}, detection_eval_transform(32)
        ),
        batch_size=2,
        collate_fn=detection_collate,
    )
    images, targets = next(iter(loader))
    assert images.shape == (1, 3, 32, 32) and targets[0]["boxes"].tolist() == [[5.0, 5.0, 20.0, 20.0]]


def test_detection_dataset_rejects_unknown_classes(kitti: Path, det_pack: Path) -> None:
    identity = lambda image, target: (image, target)  # noqa: E731
    with pytest.raises(GesturekitError, match=rf"{det_pack}: class 'left_hand' is not one of \['hand'\]"):
        DetectionDataset([det_pack], "train", ["hand"], {}, identity)
    with pytest.raises(GesturekitError, match=rf"{kitti}: class 'palm' \(mapped from 'left_hand'\)"):
        DetectionDataset([kitti], "train", ["hand"], {"left_hand": "palm"}, identity)
    with pytest.raises(GesturekitError, match=rf"{det_pack}: no split 'test' \(splits: train, val\)"):
        DetectionDataset([det_pack], "test", ["hand"], {"left_hand": "hand"}, identity)


def crop_folders(root: Path, names: dict[str, int]) -> Path:
    for name, n in names.items():
        for i in range(n):
            make_image(root / name / f"{i}.jpg", (30 + i, 40), (10 * i, 100, 200))
    return root


def test_classification_dataset_from_folders_and_packs(tmp_path: Path, kitti: Path) -> None:
    folders = crop_folders(tmp_path / "crops", {"like": 3, "fist": 2, "peace": 4})
    cmap = {"like": "thumbs_up", "peace": "two"}
    classes = ["thumbs_up", "fist", "two", "hand"]
    folder_pack = tmp_path / "crops.gkpack"
    build_classification_pack(
        class_folder_sources(folders, lambda c: cmap.get(c, c), holdout=0.25, seed=0),
        folder_pack,
        24,
        workers=0,
        progress=False,
    )
    frame_pack = tmp_path / "frames.gkpack"
    build_classification_pack(
        frame_sources(read_kitti_splits(kitti), lambda c: "hand"), frame_pack, 48, workers=0, progress=False
    )
    transform = classification_train_transform(ClassificationAugmentation(input_size=40), CropConvention())
    ds = ClassificationDataset([folders, folder_pack, frame_pack], "train", classes, cmap, transform)
    assert len(ds) == 9 + 6 + 2 and len(ds.targets) == len(ds)
    assert ds.targets[:9] == [1, 1, 0, 0, 0, 2, 2, 2, 2]  # the folders, sorted by name
    assert sorted(ds.targets[9:15]) == [0, 0, 1, 2, 2, 2] and ds.targets[15:] == [3, 3]
    for i in (0, 10, 16):
        image, label = ds[i]
        assert image.shape == (3, 40, 40) and image.dtype == torch.float32
        assert label == ds.targets[i]

    seen = []
    eval_ds = ClassificationDataset(
        [frame_pack],
        "train",
        classes,
        {},
        lambda image, box: seen.append((image.shape, box)) or torch.zeros(3, 8, 8),
    )
    eval_ds[0]
    ((shape, box),) = seen
    # the hand (4, 4, 20, 30) enlarged 2x square is cut at the frame's corner: a 38x43 crop, box unmoved
    assert shape[1:] == (43, 38) and box == (4.0, 4.0, 20.0, 30.0)

    test = ClassificationDataset(
        [folder_pack], "test", classes, {}, classification_eval_transform(24, CropConvention())
    )
    images = torch.stack([test[i][0] for i in range(len(test))])
    assert images.shape == (3, 3, 24, 24)


def test_classification_dataset_split_folders_and_errors(tmp_path: Path, kitti: Path) -> None:
    root = tmp_path / "root"
    crop_folders(root / "train", {"fist": 2, "ok": 1})
    crop_folders(root / "val", {"ok": 3})
    identity = lambda image, box: image  # noqa: E731
    assert ClassificationDataset([root], "val", ["fist", "ok"], {}, identity).targets == [1, 1, 1]
    assert ClassificationDataset([root], "train", ["fist", "ok"], {}, identity).targets == [0, 0, 1]
    with pytest.raises(GesturekitError, match=rf"{root}: class 'ok' is not one of \['fist', 'two'\]"):
        ClassificationDataset([root], "train", ["fist", "two"], {}, identity)
    det_pack = tmp_path / "det.gkpack"
    build_detection_pack(read_kitti_splits(kitti), det_pack, 32, workers=0, progress=False)
    with pytest.raises(GesturekitError, match=rf"{det_pack}: a detection pack where a classification pack"):
        ClassificationDataset([det_pack], "train", ["hand"], {}, identity)
    with pytest.raises(GesturekitError, match="not a class-folder root or a .gkpack"):
        ClassificationDataset([tmp_path / "nothing.txt"], "train", ["hand"], {}, identity)


def test_pack_dataset_in_worker_processes(tmp_path: Path) -> None:
    folders = crop_folders(tmp_path / "crops", {"a": 4, "b": 4})
    pack = tmp_path / "c.gkpack"
    build_classification_pack(class_folder_sources(folders), pack, 32, workers=0, progress=False)
    ds = ClassificationDataset(
        [pack], "train", ["a", "b"], {}, classification_eval_transform(16, CropConvention())
    )
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 3, 16, 16)] * 2
    assert torch.cat([b[1] for b in batches]).tolist() == ds.targets


def test_detection_collate_pads_inputs_of_different_sizes_with_normalised_black() -> None:
    wide = normalize(torch.full((3, 32, 64), 255, dtype=torch.uint8))
    tall = normalize(torch.full((3, 64, 32), 255, dtype=torch.uint8))
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    images, out_targets = detection_collate([(wide, targets[0]), (tall, targets[1])])
    assert images.shape == (2, 3, 64, 64) and out_targets == targets
    assert torch.equal(images[0, :, :32], wide) and torch.equal(images[1, :, :, :32], tall)
    black = normalize(torch.zeros(3, 1, 1, dtype=torch.uint8))
    assert torch.allclose(images[0, :, 32:], black.expand(3, 32, 64))
    assert torch.allclose(images[1, :, :, 32:], black.expand(3, 64, 32))
    same, _ = detection_collate([(wide, targets[0]), (wide, targets[1])])
    assert torch.equal(same, torch.stack([wide, wide]))
