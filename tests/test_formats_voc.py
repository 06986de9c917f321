from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_image
from gesturekit.data.formats.egohands import read_egohands_csv
from gesturekit.data.formats.kitti import read_kitti_splits, write_kitti_dataset
from gesturekit.data.formats.voc import format_voc_xml, read_voc, read_voc_xml, write_voc
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError


def _by_name(splits: dict[str, list[ImageAnnotation]]) -> dict[str, list[tuple]]:
    return {
        (split, a.image.name): [(b.label, b.x1, b.y1, b.x2, b.y2) for b in a.boxes]
        for split, anns in splits.items() for a in anns
    }


def test_voc_round_trips_through_kitti(data_root: Path, tmp_path: Path):
    source = read_egohands_csv(data_root / "egohands")
    for ann in source["test"][:5]:  # sub-pixel corners too, not only the integer ones of the CSV
        ann.boxes = [Box(b.label, b.x1 + 0.25, b.y1 + 0.5, b.x2 - 0.75, b.y2 - 0.4) for b in ann.boxes]
    write_voc(source, tmp_path / "voc")
    voc = read_voc(tmp_path / "voc")
    assert set(voc) == {"test", "train"}
    write_kitti_dataset(voc, tmp_path / "kitti")
    kitti = read_kitti_splits(tmp_path / "kitti")
    write_voc(kitti, tmp_path / "voc2")
    back = read_voc(tmp_path / "voc2")
    expected = _by_name(source)
    for result in (voc, kitti, back):
        got = _by_name(result)
        assert got.keys() == expected.keys()
        for key, boxes in expected.items():
            assert len(got[key]) == len(boxes)
            for x, y in zip(got[key], boxes):
                assert x[0] == y[0] and max(abs(u - v) for u, v in zip(x[1:], y[1:])) <= 0.5


def _xml(objects: str, size: str = "<size><width>64</width><height>48</height><depth>3</depth></size>") -> str:
    return f"<annotation><filename>a.jpg</filename>{size}{objects}</annotation>"


OBJ = (
    "<object><name>hand</name><difficult>1</difficult>"
    "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10.5</xmax><ymax>20</ymax></bndbox></object>"
)


def test_every_object_is_kept_and_splits_are_read(tmp_path: Path):
    make_image(tmp_path / "JPEGImages" / "a.jpg")
    make_image(tmp_path / "JPEGImages" / "b.png")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(_xml(OBJ + OBJ.replace("hand", "fist")))
    no_size = "<annotation><size><width>0</width><height>0</height></size></annotation>"
    (tmp_path / "Annotations" / "b.xml").write_text(no_size)
    assert read_voc(tmp_path)["all"][0].boxes == [Box("hand", 1, 2, 10.5, 20), Box("fist", 1, 2, 10.5, 20)]
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    (tmp_path / "ImageSets" / "Main" / "hand_val.txt").write_text("a 1\n")
    splits = read_voc(tmp_path)
    assert {k: [x.image.name for x in v] for k, v in splits.items()} == {"val": ["a.jpg"], "unlisted": ["b.png"]}
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\nzz\n")
    with pytest.raises(GesturekitError, match=r"val.txt:2: no Annotations/zz.xml"):
        read_voc(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object>", ":1: invalid XML"),
        ("<notvoc/>", "root element is <notvoc>"),
        (_xml("<object><name>hand</name></object>"), "object[0]: missing <bndbox>"),
        (_xml(OBJ.replace("<ymin>2</ymin>", "")), "object[0]: missing <ymin>"),
        (_xml(OBJ.replace("<ymin>2</ymin>", "<ymin>two</ymin>")), "object[0]: <ymin> is not a number: 'two'"),
        (_xml(OBJ.replace("<xmax>10.5</xmax>", "<xmax>1</xmax>")), "object[0]: x2 (1) <= x1 (1)"),
        (_xml(OBJ.replace("<name>hand</name>", "")), "object[0]: empty class name"),
        (_xml(OBJ, "<size><width>640</width><height>480</height></size>"), "<size> 640x480 but a.jpg is 64x48"),
        (_xml(OBJ).replace("a.jpg", "zz.jpg"), "image 'zz.jpg' not found"),
    ],
)
def test_bad_xml_names_file_and_object(tmp_path: Path, text: str, message: str):
    make_image(tmp_path / "JPEGImages" / "a.jpg")
    path = tmp_path / "Annotations" / "x.xml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(GesturekitError) as err:
        read_voc_xml(path, tmp_path / "JPEGImages")
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_writer_output_reads_back(tmp_path: Path):
    img = make_image(tmp_path / "a.jpg")
    ann = ImageAnnotation(img, 64, 48, [Box("thumbs up", 1.25, 2, 30, 40.5)])
    assert "<xmin>1.25</xmin>" in format_voc_xml(ann, "a.jpg")
    write_voc({"train": [ann]}, tmp_path / "out")
    [back] = read_voc(tmp_path / "out")["train"]
    assert back.boxes == ann.boxes
    with pytest.raises(GesturekitError, match="already holds a dataset"):
        write_voc({"train": [ann]}, tmp_path / "out")


_coord = st.one_of(st.floats(-100, 200).map(lambda v: f"{v:.2f}"), st.sampled_from(["", "x", "nan", "1e999", " 3 "]))


def _voc_object(name: str | None, coords: list[str], drop_box: bool) -> str:
    corners = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), coords))
    return (
        "<object>" + (f"<name>{name}</name>" if name is not None else "")
        + ("" if drop_box else f"<bndbox>{corners}</bndbox>") + "</object>"
    )


_object = st.builds(
    _voc_object,
    st.one_of(st.none(), st.sampled_from(["hand", "", "a b", "&amp;"])),
    st.lists(_coord, min_size=4, max_size=4),
    st.booleans(),
)
_document = st.one_of(
    st.lists(_object, max_size=4).map(lambda objs: _xml("".join(objs))),
    st.text(max_size=60),
    st.lists(_object, min_size=1, max_size=2).map(lambda objs: _xml("".join(objs))[:-5]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_document)
def test_malformed_xml_raises_or_keeps_every_object(tmp_path: Path, text: str):
    make_image(tmp_path / "JPEGImages" / "a.jpg")
    path = tmp_path / "x.xml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        ann = read_voc_xml(path, tmp_path / "JPEGImages")
    except GesturekitError as exc:
        assert re.match(rf"{re.escape(str(path))}(:\d+)?: ", str(exc))
    else:
        assert len(ann.boxes) == text.count("<object>")
