from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from conftest import make_image, write_egohands_release
from gesturekit.data.formats.egohands import polygon_box, read_egohands, read_egohands_csv
from gesturekit.data.records import Box
from gesturekit.errors import GesturekitError

SQUARE = [(10, 5), (30, 5), (30, 25), (10, 25)]
VIDEOS = {
    "CARDS_OFFICE_S_B": [
        (12, {"myleft": SQUARE, "yourright": [(100, 60), (140, 80), (120, 50)]}),  # 2nd clipped to 128x72
        (40, {}),
        (7, {"myright": [(5, 5), (5, 30)], "yourleft": [(-20, 1), (-5, 9)]}),  # both degenerate
    ],
    "PUZZLE_LIVINGROOM_T_B": [(100, {"myleft": [(0.5, 0.5), (2.5, 3.5)], "myright": SQUARE})],
}


def test_original_release_with_metadata(tmp_path: Path):
    root = write_egohands_release(tmp_path / "ego", VIDEOS, extra_frames=[("CARDS_OFFICE_S_B", 13)])
    annotations, dropped = read_egohands(root)
    assert dropped == 2
    assert [(a.image.parent.name, a.image.name, a.group) for a in annotations] == [
        ("CARDS_OFFICE_S_B", "frame_0012.jpg", "CARDS_OFFICE_S_B"),
        ("CARDS_OFFICE_S_B", "frame_0040.jpg", "CARDS_OFFICE_S_B"),
        ("CARDS_OFFICE_S_B", "frame_0007.jpg", "CARDS_OFFICE_S_B"),
        ("PUZZLE_LIVINGROOM_T_B", "frame_0100.jpg", "PUZZLE_LIVINGROOM_T_B"),
    ]
    assert annotations[0].boxes == [Box("hand", 10, 5, 30, 25), Box("hand", 100, 50, 128, 72)]
    assert annotations[1].boxes == [] and annotations[2].boxes == []
    assert annotations[3].boxes == [Box("hand", 0.5, 0.5, 2.5, 3.5), Box("hand", 10, 5, 30, 25)]
    assert (annotations[0].width, annotations[0].height) == (128, 72)
    # the _LABELLED_SAMPLES folder itself works too, and finds metadata.mat beside it
    assert read_egohands(root / "_LABELLED_SAMPLES")[0][2].image.name == "frame_0007.jpg"


def test_original_release_without_metadata_uses_sorted_frames(tmp_path: Path):
    videos = {"CHESS_COURTYARD_B_T": [(3, {"myleft": SQUARE}), (9, {}), (21, {"yourleft": SQUARE})]}
    annotations, dropped = read_egohands(write_egohands_release(tmp_path / "ego", videos, metadata=False))
    assert dropped == 0
    assert [(a.image.name, len(a.boxes)) for a in annotations] == [
        ("frame_0003.jpg", 1), ("frame_0009.jpg", 0), ("frame_0021.jpg", 1),
    ]


def test_original_release_errors(tmp_path: Path):
    root = write_egohands_release(tmp_path / "a", {"V": [(1, {"myleft": SQUARE})]}, metadata=False,
                                  extra_frames=[("V", 2)])
    with pytest.raises(GesturekitError, match="1 polygons entries but 2 frame images"):
        read_egohands(root)
    root = write_egohands_release(tmp_path / "b", {"V": [(1, {"myleft": SQUARE})]})
    (root / "_LABELLED_SAMPLES" / "V" / "frame_0001.jpg").unlink()
    with pytest.raises(GesturekitError, match="frame_0001.jpg: frame listed in metadata.mat not found"):
        read_egohands(root)
    root = write_egohands_release(tmp_path / "c", {"V": [(1, {})]})
    polygons = root / "_LABELLED_SAMPLES" / "V" / "polygons.mat"
    scipy.io.savemat(polygons, {"polygons": np.zeros((1, 1), dtype=[("myleft", "O")])})
    with pytest.raises(GesturekitError, match="polygons lacks field 'myright'"):
        read_egohands(root)
    polygons.write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(GesturekitError, match="unreadable MATLAB file"):
        read_egohands(root)
    with pytest.raises(GesturekitError, match="not an EgoHands release"):
        read_egohands(tmp_path / "nothing")


def test_polygon_box_shapes():
    assert polygon_box(np.zeros((0, 0)), 10, 10, "w") is None
    assert polygon_box([[1, 2], [3, float("nan")], [4, 6]], 10, 10, "w") == (1, 2, 4, 6)
    assert polygon_box([[5, 5]], 10, 10, "w") is None
    with pytest.raises(GesturekitError, match="w: polygon has shape"):
        polygon_box(np.ones((3, 3)), 10, 10, "w")
    with pytest.raises(GesturekitError, match="w: polygon is not a numeric array"):
        polygon_box([["a", "b"]], 10, 10, "w")


def test_real_csv_form(data_root: Path):
    splits = read_egohands_csv(data_root / "egohands")
    assert {k: len(v) for k, v in splits.items()} == {"test": 40, "train": 360}
    boxes = {k: sum(len(a.boxes) for a in v) for k, v in splits.items()}
    rows = {k: sum(1 for _ in csv.DictReader((data_root / "egohands" / f"{k}_labels.csv").open())) for k in splits}
    assert boxes == rows == {"test": 125, "train": 1023}
    first = splits["train"][0]
    assert first.group == "CARDS_LIVINGROOM_B_T" and (first.width, first.height) == (640, 360)
    groups = {a.group for v in splits.values() for a in v}
    assert groups == {"CARDS_LIVINGROOM_B_T", "CARDS_OFFICE_S_B", "CHESS_COURTYARD_B_T", "PUZZLE_LIVINGROOM_T_B"}


HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("V_frame_0001.jpg,64,48,hand,1,2,3\n", ":2: expected 8 columns, got 7"),
        ("V_frame_0001.jpg,64,48,hand,1,2,x,4\n", ":2: xmax is not a number: 'x'"),
        ("V_frame_0001.jpg,64,48,hand,5,2,5,4\n", ":2: x2 (5) <= x1 (5)"),
        ("V_frame_0001.jpg,64,48,hand,1,2,3,4\nV_frame_0001.jpg,64,40,hand,1,2,3,4\n",
         ":3: width,height 64,40 differ"),
        ("V_frame_0001.jpg,60,48,hand,1,2,3,4\n", ":2: width,height 60,48 but V_frame_0001.jpg is 64x48"),
        ("missing.jpg,64,48,hand,1,2,3,4\n", ":2: image 'missing.jpg' not found"),
        ("V_frame_0001.jpg,64,48,,1,2,3,4\n", ":2: empty class name"),
        ('"V_frame_0001.jpg,64,48,hand,1,2,3,4\n', ":2: expected 8 columns, got 1"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, body: str, message: str):
    make_image(tmp_path / "images" / "V_frame_0001.jpg", (64, 48))
    (tmp_path / "train_labels.csv").write_text(HEADER + body)
    with pytest.raises(GesturekitError) as err:
        read_egohands_csv(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "train_labels.csv"))
    assert message in str(err.value)


def test_csv_header_binary_and_duplicates(tmp_path: Path):
    make_image(tmp_path / "images" / "V_frame_0001.jpg", (64, 48))
    (tmp_path / "train_labels.csv").write_text("file,w\n")
    with pytest.raises(GesturekitError, match="train_labels.csv:1: expected the header"):
        read_egohands_csv(tmp_path)
    (tmp_path / "train_labels.csv").write_bytes(HEADER.encode() + b"\x00\xff")
    with pytest.raises(GesturekitError, match="not UTF-8"):
        read_egohands_csv(tmp_path)
    row = "V_frame_0001.jpg,64,48,hand,1,2,3,4\n"
    (tmp_path / "train_labels.csv").write_text(HEADER + row)
    (tmp_path / "test_labels.csv").write_text(HEADER + row)
    with pytest.raises(GesturekitError, match=r"train_labels.csv:2: image .V_frame_0001.jpg. is also listed in"):
        read_egohands_csv(tmp_path)
    with pytest.raises(GesturekitError, match="not the EgoHands CSV form"):
        read_egohands_csv(tmp_path / "images")
