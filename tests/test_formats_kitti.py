from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import kitti_line, make_image, write_kitti
from gesturekit.data.formats.kitti import (
    format_kitti_line,
    parse_kitti_line,
    read_kitti_dataset,
    read_kitti_labels,
    read_kitti_splits,
    unique_image_names,
    write_kitti_dataset,
)
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError


def test_line_round_trip_is_the_tao_layout():
    line = format_kitti_line(Box("hand", 10, 20.5, 30.25, 40))
    assert line == "hand 0 0 0 10 20.5 30.25 40 0 0 0 0 0 0 0"
    assert parse_kitti_line(line, "f:1") == Box("hand", 10, 20.5, 30.25, 40)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hand 0 0 0 1 2 3", "expected 15 fields, got 7"),
        (kitti_line("hand", 1, 2, 3, 4) + " 0", "expected 15 fields, got 16"),
        (kitti_line("hand", "a", 2, 3, 4), "x1 is not a number: 'a'"),
        (kitti_line("hand", 1, 2, "nan", 4), "x2 is not finite"),
        ("hand x 0 0 1 2 3 4 0 0 0 0 0 0 0", "truncation is not a number"),
        (kitti_line("hand", 5, 2, 5, 4), "x2 (5) <= x1 (5)"),
        (kitti_line("hand", 1, 9, 3, 4), "y2 (4) <= y1 (9)"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "a.txt"
    path.write_text(kitti_line("hand", 1, 2, 3, 4) + "\n\n" + line + "\n")
    with pytest.raises(GesturekitError) as err:
        read_kitti_labels(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_binary_label_file_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xff\xfe\x00hand")
    with pytest.raises(GesturekitError, match="not UTF-8"):
        read_kitti_labels(path)


def test_writer_refuses_unwritable_boxes():
    with pytest.raises(GesturekitError, match="contains whitespace.*--class-map 'thumbs up=thumbs_up'"):
        format_kitti_line(Box("thumbs up", 1, 2, 3, 4))
    with pytest.raises(GesturekitError, match=r"x2 \(1\) <= x1 \(1\)"):
        format_kitti_line(Box("hand", 1, 2, 1, 4))


_token = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-10**6, 10**6).map(str),
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6),
)
_line = st.one_of(
    st.lists(_token, min_size=0, max_size=18).map(" ".join),
    st.tuples(st.sampled_from(["hand", "x"]), *(st.floats(-1e4, 1e4) for _ in range(4))).map(
        lambda t: kitti_line(*t)
    ),
    st.text(max_size=40),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=6))
def test_malformed_files_raise_or_keep_every_box(tmp_path: Path, lines: list[str]):
    path = tmp_path / "labels.txt"
    text = "\n".join(lines)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    expected = sum(1 for line in text.split("\n") if line.strip())
    try:
        boxes = read_kitti_labels(path)
    except GesturekitError as exc:
        assert re.match(rf"{re.escape(str(path))}:\d+: ", str(exc)) or "not UTF-8" in str(exc)
        assert "\n" not in str(exc)
    else:
        assert len(boxes) == expected
        assert all(b.x2 > b.x1 and b.y2 > b.y1 for b in boxes)


@settings(max_examples=100, deadline=None)
@given(
    label=st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=8),
    x1=st.floats(-1e4, 1e4), y1=st.floats(-1e4, 1e4),
    w=st.floats(0.01, 1e4), h=st.floats(0.01, 1e4),
)
def test_written_lines_read_back_within_a_hundredth_pixel(label, x1, y1, w, h):
    box = Box(label, x1, y1, x1 + w, y1 + h)
    if any(c.isspace() for c in label):
        return
    back = parse_kitti_line(format_kitti_line(box), "f:1")
    assert back.label == label
    for a, b in zip((back.x1, back.y1, back.x2, back.y2), (box.x1, box.y1, box.x2, box.y2)):
        assert abs(a - b) <= 0.005 + 1e-9


def test_dataset_round_trip_with_colliding_names_and_groups(tmp_path: Path):
    a = make_image(tmp_path / "src" / "VID_A" / "frame_0001.jpg", (40, 30))
    b = make_image(tmp_path / "src" / "VID_B" / "frame_0001.jpg", (50, 20))
    c = make_image(tmp_path / "src" / "VID_B" / "frame 0002.png", (20, 20))
    anns = [
        ImageAnnotation(a, 40, 30, [Box("hand", 1, 2, 10, 20), Box("fist", 0, 0, 40, 30)], "VID_A"),
        ImageAnnotation(b, 50, 20, [], "VID_B"),
        ImageAnnotation(c, 20, 20, [Box("hand", 1.5, 2.25, 3, 4)], None),
    ]
    out = tmp_path / "kitti"
    written = write_kitti_dataset({"train": anns[:2], "val": anns[2:]}, out)
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "VID_A_frame_0001.jpg", "VID_B_frame_0001.jpg", "frame_0002.png",
    ]
    assert (out / "splits" / "val.txt").read_text() == "frame_0002.png\n"
    assert json.loads((out / "groups.json").read_text()) == {
        "VID_A_frame_0001.jpg": "VID_A", "VID_B_frame_0001.jpg": "VID_B",
    }
    assert (out / "labels" / "VID_B_frame_0001.txt").read_text() == ""
    for split, expected in (("train", anns[:2]), ("val", anns[2:])):
        back = read_kitti_dataset(out, split)
        assert [(x.width, x.height, x.boxes, x.group) for x in back] == [
            (x.width, x.height, x.boxes, x.group) for x in expected
        ]
        assert [x.image for x in back] == [x.image for x in written[split]]
    assert len(read_kitti_dataset(out)) == 3


def test_writer_refuses_existing_dataset_unless_overwrite(tmp_path: Path):
    img = make_image(tmp_path / "a.jpg")
    ann = ImageAnnotation(img, 64, 48, [Box("hand", 1, 1, 5, 5)])
    out = tmp_path / "out"
    write_kitti_dataset({"train": [ann]}, out)
    with pytest.raises(GesturekitError, match="already holds a dataset"):
        write_kitti_dataset({"train": [ann]}, out)
    (out / "notes.md").write_text("mine")
    write_kitti_dataset({"val": [ann]}, out, overwrite=True)
    assert [p.name for p in (out / "splits").iterdir()] == ["val.txt"]
    assert (out / "notes.md").read_text() == "mine"


def test_writer_checks_every_box_before_writing(tmp_path: Path):
    img = make_image(tmp_path / "a.jpg")
    bad = ImageAnnotation(img, 64, 48, [Box("two words", 1, 1, 5, 5)])
    with pytest.raises(GesturekitError, match=re.escape(str(img))):
        write_kitti_dataset({"train": [bad]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(GesturekitError, match="split name"):
        write_kitti_dataset({"../x": []}, tmp_path / "out")


def test_reader_errors(tmp_path: Path):
    root = write_kitti(tmp_path / "k", {"a.jpg": [kitti_line("hand", 1, 1, 4, 4)]}, {"train": ["a.jpg", "b.jpg"]})
    with pytest.raises(GesturekitError, match=r"splits/train.txt:2: image 'b.jpg' not found"):
        read_kitti_dataset(root, "train")
    with pytest.raises(GesturekitError, match=r"no split 'val' \(splits: train\)"):
        read_kitti_dataset(root, "val")
    (root / "labels" / "a.txt").unlink()
    with pytest.raises(GesturekitError, match="label file missing for image a.jpg"):
        read_kitti_dataset(root)
    (root / "labels" / "a.txt").write_bytes((root / "images" / "a.jpg").read_bytes())  # a JPEG, not text
    with pytest.raises(GesturekitError, match="not UTF-8"):
        read_kitti_dataset(root)
    (root / "images" / "a.jpg").write_bytes(b"not a jpeg")
    (root / "labels" / "a.txt").write_text("")
    with pytest.raises(GesturekitError, match="unreadable image"):
        read_kitti_dataset(root)
    with pytest.raises(GesturekitError, match="not a KITTI dataset"):
        read_kitti_dataset(tmp_path)
    (root / "groups.json").write_text("{oops")
    with pytest.raises(GesturekitError, match=r"groups.json:1: invalid JSON"):
        read_kitti_dataset(root)


def test_read_splits_keeps_unlisted_images(tmp_path: Path):
    root = write_kitti(tmp_path / "k", {"a.jpg": [], "b.jpg": [kitti_line("hand", 1, 1, 4, 4)]}, {"val": ["a.jpg"]})
    splits = read_kitti_splits(root)
    assert {k: [a.image.name for a in v] for k, v in splits.items()} == {"val": ["a.jpg"], "unlisted": ["b.jpg"]}


def test_unique_names_prefix_parents_then_count(tmp_path: Path):
    paths = [tmp_path / "x" / "images" / "a.jpg", tmp_path / "y" / "images" / "a.jpg", tmp_path / "z" / "a.png"]
    names = unique_image_names(paths + paths[:1])
    assert len(names) == 3
    assert len({Path(n).stem.lower() for n in names.values()}) == 3
    assert names[paths[0]] == "x_images_a.jpg"
    assert names[paths[2]].endswith("_z_a.png")
