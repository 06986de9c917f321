from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import make_image
from gesturekit.data.formats.hagrid import read_hagrid
from gesturekit.errors import GesturekitError


def _json_counts(root: Path) -> tuple[dict[str, int], Counter[str], dict[str, str]]:
    """Images per split, boxes per label and image id -> user_id, straight from the JSON files."""
    images: dict[str, int] = {}
    labels: Counter[str] = Counter()
    users: dict[str, str] = {}
    for path in (root / "annotations").glob("*/*.json"):
        data = json.loads(path.read_text())
        images[path.parent.name] = images.get(path.parent.name, 0) + len(data)
        for image_id, entry in data.items():
            labels.update(entry["labels"])
            users[image_id] = entry["user_id"]
    return images, labels, users


def test_real_hagrid_keeps_every_box_of_every_label(data_root: Path):
    root = data_root / "hagrid"
    splits = read_hagrid(root)
    images, labels, users = _json_counts(root)
    assert {k: len(v) for k, v in splits.items()} == images
    assert sum(images.values()) == 464
    assert Counter(b.label for v in splits.values() for a in v for b in a.boxes) == labels
    assert labels["no_gesture"] > 0
    for ann in (a for v in splits.values() for a in v):
        assert ann.group == users[ann.image.stem]
        assert all(0 <= b.x1 < b.x2 <= ann.width and 0 <= b.y1 < b.y2 <= ann.height for b in ann.boxes)


def test_boxes_are_pixels_of_the_frame(tmp_path: Path):
    make_image(tmp_path / "frames" / "id1.jpg", (200, 100))
    make_image(tmp_path / "frames" / "id2.jpg", (50, 50))
    (tmp_path / "annotations" / "val").mkdir(parents=True)
    (tmp_path / "annotations" / "val" / "like.json").write_text(json.dumps({
        "id1": {"bboxes": [[0.1, 0.2, 0.5, 0.25], [0, 0, 1, 1]], "labels": ["like", "no_gesture"], "user_id": "u1"},
        "id2": {"bboxes": [], "labels": [], "user_id": "u2"},
    }))
    [a, b] = read_hagrid(tmp_path)["val"]
    assert [(x.label, x.x1, x.y1, x.x2, x.y2) for x in a.boxes] == [
        ("like", 20, 20, 120, 45), ("no_gesture", 0, 0, 200, 100),
    ]
    assert (a.group, b.group, b.boxes) == ("u1", "u2", [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "like.json:1: invalid JSON"),
        ("[]", "like.json: expected an object"),
        ('{"id1": 3}', "like.json: id1: expected an object"),
        ('{"id1": {"bboxes": [[0, 0, 1, 1]], "labels": []}}', "id1: 1 bboxes but 0 labels"),
        ('{"id1": {"bboxes": [[0, 0, 1]], "labels": ["a"]}}', "id1.bboxes[0]: expected [x, y, w, h] numbers"),
        ('{"id1": {"bboxes": [[0, 0, "1", 1]], "labels": ["a"]}}', "id1.bboxes[0]: expected [x, y, w, h] numbers"),
        ('{"id1": {"bboxes": [[0, 0, 0, 1]], "labels": ["a"]}}', "id1.bboxes[0]: x2 (0) <= x1 (0)"),
        ('{"id1": {"bboxes": [[0, 0, 1, 1]], "labels": [7]}}', "id1.labels[0]: expected a string"),
        ('{"id1": {"bboxes": "x", "labels": []}}', "id1: 'bboxes' and 'labels' must both be lists"),
        ('{"nope": {"bboxes": [], "labels": []}}', "nope: frame nope.jpg not found"),
    ],
)
def test_bad_annotations_name_file_and_key(tmp_path: Path, content: str, message: str):
    make_image(tmp_path / "frames" / "id1.jpg")
    (tmp_path / "annotations" / "test").mkdir(parents=True)
    (tmp_path / "annotations" / "test" / "like.json").write_text(content)
    with pytest.raises(GesturekitError) as err:
        read_hagrid(tmp_path)
    assert message in str(err.value)


def test_image_in_two_files_and_missing_layout(tmp_path: Path):
    make_image(tmp_path / "frames" / "id1.jpg")
    (tmp_path / "annotations" / "test").mkdir(parents=True)
    entry = {"id1": {"bboxes": [], "labels": []}}
    for name in ("a.json", "b.json"):
        (tmp_path / "annotations" / "test" / name).write_text(json.dumps(entry))
    with pytest.raises(GesturekitError, match="b.json: id1: image id also annotated in .*a.json"):
        read_hagrid(tmp_path)
    with pytest.raises(GesturekitError, match="not HaGRID"):
        read_hagrid(tmp_path / "frames")
