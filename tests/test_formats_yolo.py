from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_image
from gesturekit.data.formats.kitti import read_kitti_splits, write_kitti_dataset
from gesturekit.data.formats.yolo import read_names, read_yolo, read_yolo_labels, write_yolo
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError


def _boxes(splits: dict[str, list[ImageAnnotation]]) -> dict[str, list[tuple]]:
    return {
        a.image.stem: [(b.label, b.x1, b.y1, b.x2, b.y2) for b in a.boxes]
        for anns in splits.values() for a in anns
    }


def _assert_close(a: dict[str, list[tuple]], b: dict[str, list[tuple]], tol: float = 0.5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert len(a[key]) == len(b[key]), key
        for x, y in zip(a[key], b[key]):
            assert x[0] == y[0]
            assert max(abs(u - v) for u, v in zip(x[1:], y[1:])) <= tol, (key, x, y)


def test_real_yolo_round_trips_through_kitti(data_root: Path, tmp_path: Path):
    source = read_yolo(data_root / "hands_yolo")
    assert {k: len(v) for k, v in source.items()} == {"test": 253, "train": 512, "val": 188}
    label_files = (data_root / "hands_yolo").glob("*/labels/*.txt")
    n_lines = sum(1 for p in label_files for line in p.read_text().splitlines() if line.strip())
    assert sum(len(a.boxes) for v in source.values() for a in v) == n_lines
    kitti = write_kitti_dataset(source, tmp_path / "kitti")
    back_kitti = read_kitti_splits(tmp_path / "kitti")
    assert set(back_kitti) == {"train", "val", "test"}
    write_yolo(back_kitti, tmp_path / "yolo", names=["hand"])
    assert sorted(p.name for p in (tmp_path / "yolo").iterdir()) == ["data.yaml", "test", "train", "valid"]
    back = read_yolo(tmp_path / "yolo")
    _assert_close(_boxes(source), _boxes(kitti))
    _assert_close(_boxes(source), _boxes(back_kitti))
    _assert_close(_boxes(source), _boxes(back))


def _dataset(root: Path, label_text: str | bytes, names: str = "names: ['hand', 'fist']\n") -> Path:
    make_image(root / "train" / "images" / "a.jpg", (100, 50))
    (root / "train" / "labels").mkdir(parents=True, exist_ok=True)
    path = root / "train" / "labels" / "a.txt"
    path.write_bytes(label_text if isinstance(label_text, bytes) else label_text.encode())
    (root / "data.yaml").write_text(names)
    return path


def _empty_yolo(root: Path) -> Path:
    root.mkdir()
    (root / "data.yaml").write_text("names: [hand]\n")
    return root


def test_pixels_and_classes(tmp_path: Path):
    _dataset(tmp_path, "1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.2 0.2")
    make_image(tmp_path / "valid" / "images" / "b.jpg")
    [a] = read_yolo(tmp_path)["train"]
    assert a.boxes == [Box("fist", 40, 15, 60, 35), Box("hand", 0, 0, 20, 10)]
    assert read_yolo(tmp_path)["val"][0].boxes == []  # an image without a label file
    flat = tmp_path / "flat"
    make_image(flat / "images" / "c.png", (10, 10))
    (flat / "labels").mkdir()
    (flat / "labels" / "c.txt").write_text("0 0.5 0.5 1 1\n")
    (flat / "data.yaml").write_text("names: [hand]\n")
    assert read_yolo(flat)["all"][0].boxes == [Box("hand", 0, 0, 10, 10)]
    with pytest.raises(GesturekitError, match="no <split>/images"):
        read_yolo(_empty_yolo(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields (class cx cy w h), got 4"),
        ("0 0.5 0.5 0.2 0.2 0.1 0.1", "expected 5 fields"),
        ("2 0.5 0.5 0.2 0.2", "class '2' is not an index 0..1"),
        ("0.5 0.5 0.5 0.2 0.2", "class '0.5' is not an index"),
        ("0 50 25 20 10", "cx 50 is not in [0, 1]"),
        ("0 0.5 0.5 0 0.2", "w and h must be > 0"),
        ("0 0.5 abc 0.2 0.2", "cy is not a number: 'abc'"),
        ("0 0.5 0.5 inf 0.2", "w is not finite"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str):
    path = _dataset(tmp_path, f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(GesturekitError) as err:
        read_yolo(tmp_path)
    assert str(err.value).startswith(f"{path}:2: ")
    assert message in str(err.value)


def test_layout_errors(tmp_path: Path):
    _dataset(tmp_path, "0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "train" / "labels" / "orphan.txt").write_text("")
    with pytest.raises(GesturekitError, match="orphan.txt: label file without an image"):
        read_yolo(tmp_path)
    (tmp_path / "train" / "labels" / "orphan.txt").unlink()
    for names, message in (
        ("names: [hand, no]\n", r"names\[1\]: False is not a class name"),
        ("names: {0: hand, 2: fist}\n", "keys must be the indices"),
        ("nc: 1\n", "names: expected a non-empty list"),
        ("names: [hand\n", "data.yaml:2: invalid YAML"),
    ):
        (tmp_path / "data.yaml").write_text(names)
        with pytest.raises(GesturekitError, match=message):
            read_yolo(tmp_path)
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(GesturekitError, match="data.yaml: file not found"):
        read_yolo(tmp_path)
    assert read_names(_dataset(tmp_path / "d", "", "names: {0: a, 1: b}\n").parents[2] / "data.yaml") == ["a", "b"]


def test_writer_refuses_boxes_it_cannot_express(tmp_path: Path):
    img = make_image(tmp_path / "a.jpg", (100, 50))
    with pytest.raises(GesturekitError, match="box 150,0,160,10 does not fit the 100x50 image"):
        write_yolo({"train": [ImageAnnotation(img, 100, 50, [Box("hand", 150, 0, 160, 10)])]}, tmp_path / "out")
    with pytest.raises(GesturekitError, match="class 'fist' is not in the class names"):
        write_yolo({"train": [ImageAnnotation(img, 100, 50, [Box("fist", 1, 1, 9, 9)])]}, tmp_path / "out", ["hand"])
    assert not (tmp_path / "out").exists()


_field = st.one_of(
    st.floats(-2, 2).map(lambda v: f"{v:.4f}"),
    st.integers(-3, 3).map(str),
    st.sampled_from(["nan", "inf", "1e400", "x", "", "0x1", "١"]),
)
_line = st.one_of(st.lists(_field, max_size=7).map(" ".join), st.text(max_size=30))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=5))
def test_malformed_files_raise_or_keep_every_box(tmp_path: Path, lines: list[str]):
    path = tmp_path / "a.txt"
    text = "\n".join(lines)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        boxes = read_yolo_labels(path, ["hand", "fist", "ok"], 64, 48)
    except GesturekitError as exc:
        assert re.match(rf"{re.escape(str(path))}(:\d+)?: ", str(exc))
    else:
        assert len(boxes) == sum(1 for line in text.split("\n") if line.strip())
