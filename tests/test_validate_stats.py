from __future__ import annotations

from pathlib import Path

import pytest

from conftest import kitti_line, make_image, write_kitti
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.data.stats import compute_stats, kitti_stats, size_bin
from gesturekit.data.validate import validate_kitti
from gesturekit.errors import GesturekitError


def test_clean_dataset_is_ok(tmp_path: Path):
    root = write_kitti(tmp_path / "k", {"a.jpg": [kitti_line("hand", 1, 1, 64, 48)], "b.png": []},
                       {"train": ["a.jpg"], "val": ["b.png"]})
    report = validate_kitti(root, ["hand"])
    assert report.ok, report.problems
    assert (report.images, report.boxes, report.splits) == (2, 1, {"train": 1, "val": 1})


def test_every_problem_is_reported_with_file_and_line(tmp_path: Path):
    root = write_kitti(tmp_path / "k", {
        "a.jpg": [
            kitti_line("hand", 1, 1, 10, 10),
            "hand 0 0 0 1 2 3",
            kitti_line("hand", 1, "y", 10, 10),
            kitti_line("hand", 9, 1, 3, 10),
            kitti_line("hand", -1, 1, 65, 10),
            kitti_line("palm", 1, 1, 10, 10),
        ],
        "b.jpg": [],
        "c.jpg": [],
    }, {"train": ["a.jpg", "b.jpg", "nope.jpg", "a.jpg"], "val": ["b.jpg"]})
    (root / "images" / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "labels" / "c.txt").unlink()
    (root / "labels" / "orphan.txt").write_text("")
    (root / "images" / "notes.txt").write_text("hi")
    make_image(root / "images" / "a.png")
    (root / "groups.json").write_text('{"zz.jpg": "v"}')
    report = validate_kitti(root, ["hand"])
    label_a = root / "labels" / "a.txt"
    expected = [
        f"{label_a}:2: expected 15 fields, got 7",
        f"{label_a}:3: y1 is not a number: 'y'",
        f"{label_a}:4: x2 (3) <= x1 (9)",
        f"{label_a}:5: box -1,1,65,10 lies outside the 64x48 image",
        f"{label_a}:6: unknown class 'palm' (expected one of hand)",
        f"{root / 'images' / 'b.jpg'}: unreadable image",
        f"{root / 'labels' / 'c.txt'}: missing",
        f"{root / 'labels' / 'orphan.txt'}: no image orphan.* in images/",
        f"{root / 'images' / 'notes.txt'}: not an image file",
        f"{root / 'images' / 'a.png'}: shares the label file a.txt with a.jpg",
        f"{root / 'splits' / 'train.txt'}:3: image 'nope.jpg' not found in images/",
        f"{root / 'splits' / 'train.txt'}:4: image 'a.jpg' listed twice",
        f"{root / 'splits' / 'val.txt'}:1: image 'b.jpg' also in split 'train'",
        f"{root / 'groups.json'}: 'zz.jpg': no such image in images/",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in report.problems), (line, report.problems)
    assert len(report.problems) == len(expected)
    assert all("\n" not in p for p in report.problems)
    assert not report.ok


def test_structural_problems(tmp_path: Path):
    with pytest.raises(GesturekitError, match="not a folder"):
        validate_kitti(tmp_path / "missing")
    assert validate_kitti(tmp_path).problems == [f"{tmp_path / 'images'}: missing (not a KITTI dataset)"]
    (tmp_path / "images").mkdir()
    (tmp_path / "groups.json").write_text("[1]")
    problems = validate_kitti(tmp_path).problems
    assert problems[0] == f"{tmp_path / 'images'}: no images"
    assert problems[1].startswith(f"{tmp_path / 'splits'}: no <split>.txt files")
    assert problems[2].startswith(f"{tmp_path / 'groups.json'}: expected an object")


def test_stats_counts_classes_splits_and_sizes(tmp_path: Path):
    root = write_kitti(tmp_path / "k", {
        "a.jpg": [kitti_line("hand", 0, 0, 10, 10), kitti_line("fist", 0, 0, 40, 40)],
        "b.jpg": [kitti_line("hand", 0, 0, 64, 48)],
        "c.jpg": [],
    }, {"train": ["a.jpg", "b.jpg"], "val": ["c.jpg"]})
    stats = kitti_stats(root)
    assert (stats.images, stats.boxes, stats.images_without_boxes) == (3, 3, 1)
    assert stats.classes == {"hand": 2, "fist": 1}
    assert stats.sizes == {"<16": 1, "16-32": 0, "32-64": 2, "64-128": 0, "128-256": 0, ">=256": 0}
    assert stats.splits == {"train": {"images": 2, "boxes": 3}, "val": {"images": 1, "boxes": 0}}
    assert set(stats.to_dict()) == {"images", "boxes", "images_without_boxes", "classes", "sizes", "splits"}
    assert size_bin(Box("h", 0, 0, 300, 300)) == ">=256"
    same = ImageAnnotation(Path("x.jpg"), 10, 10, [Box("h", 0, 0, 5, 5)])
    assert compute_stats({"train": [same], "trainval": [same]}).boxes == 1  # an image counts once
