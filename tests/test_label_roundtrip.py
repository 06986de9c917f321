"""Label formats: random boxes on images of random (non-square) sizes survive KITTI, YOLO and VOC datasets
written and read back, within each format's stated precision; and hand-worked lines read as the formats
define them (KITTI fields 4-7 are x1 y1 x2 y2; YOLO is ``class cx cy w h`` normalised by width and height;
VOC's ``bndbox`` holds xmin ymin xmax ymax)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_image
from gesturekit.data.formats.kitti import read_kitti_splits, write_kitti_dataset
from gesturekit.data.formats.voc import read_voc, write_voc
from gesturekit.data.formats.yolo import read_yolo, write_yolo
from gesturekit.data.records import Box, ImageAnnotation

CLASSES = ["hand", "fist", "thumbs_up"]
KITTI_VOC_TOLERANCE = 0.005 + 1e-9
"""KITTI and VOC write corners with 2 decimals."""
YOLO_DECIMALS = 1e-6
"""YOLO writes normalised values with 6 decimals: an edge ``(cx +- w/2) * W`` is within ``1e-6 * W``."""


@st.composite
def dataset(draw: st.DrawFn) -> list[tuple[tuple[int, int], list[Box]]]:
    """1-3 images of 8-1200 px a side, each with 0-4 boxes lying on the image."""
    images = []
    for _ in range(draw(st.integers(1, 3))):
        width, height = draw(st.integers(8, 1200)), draw(st.integers(8, 1200))
        boxes = []
        for _ in range(draw(st.integers(0, 4))):
            x1 = draw(st.floats(0, width - 1))
            y1 = draw(st.floats(0, height - 1))
            x2 = draw(st.floats(x1 + 0.05, width))
            y2 = draw(st.floats(y1 + 0.05, height))
            boxes.append(Box(draw(st.sampled_from(CLASSES)), x1, y1, x2, y2))
        images.append(((width, height), boxes))
    return images


def annotations(root: Path, images: list[tuple[tuple[int, int], list[Box]]]) -> dict[str, list[ImageAnnotation]]:
    """Real image files of the sizes drawn, split alternately into train and val."""
    anns = [ImageAnnotation(make_image(root / f"img{i}.png", size, (0, 0, 0)), *size, boxes)
            for i, (size, boxes) in enumerate(images)]
    splits = {"train": anns[0::2]}
    if anns[1::2]:
        splits["val"] = anns[1::2]
    return splits


def assert_same(read: dict[str, list[ImageAnnotation]], written: dict[str, list[ImageAnnotation]],
                tolerance) -> None:
    """The same splits, images (by stem, with their sizes) and boxes in order, corners within ``tolerance(W, H)``."""
    assert {k: [a.image.stem for a in v] for k, v in read.items()} == \
        {k: [a.image.stem for a in v] for k, v in written.items()}
    for split in written:
        for got, want in zip(read[split], written[split]):
            assert (got.width, got.height) == (want.width, want.height)
            assert [b.label for b in got.boxes] == [b.label for b in want.boxes]
            tx, ty = tolerance(want.width, want.height)
            for g, w in zip(got.boxes, want.boxes):
                assert abs(g.x1 - w.x1) <= tx and abs(g.x2 - w.x2) <= tx, (g, w)
                assert abs(g.y1 - w.y1) <= ty and abs(g.y2 - w.y2) <= ty, (g, w)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=dataset())
def test_kitti_yolo_voc_round_trips(tmp_path_factory: pytest.TempPathFactory, images) -> None:
    root = tmp_path_factory.mktemp("labels")
    source = annotations(root / "src", images)
    kitti_tolerance = lambda w, h: (KITTI_VOC_TOLERANCE, KITTI_VOC_TOLERANCE)  # noqa: E731
    yolo_tolerance = lambda w, h: (YOLO_DECIMALS * w + 1e-9, YOLO_DECIMALS * h + 1e-9)  # noqa: E731

    write_kitti_dataset(source, root / "kitti")
    kitti = read_kitti_splits(root / "kitti")
    assert_same(kitti, source, kitti_tolerance)

    write_yolo(source, root / "yolo", names=CLASSES)
    assert_same(read_yolo(root / "yolo"), source, yolo_tolerance)

    write_voc(source, root / "voc")
    assert_same(read_voc(root / "voc"), source, kitti_tolerance)

    write_yolo(kitti, root / "kitti_yolo", names=CLASSES)  # a chain of conversions adds the precisions up
    write_voc(read_yolo(root / "kitti_yolo"), root / "kitti_yolo_voc")
    assert_same(read_voc(root / "kitti_yolo_voc"), source, lambda w, h: (
        2 * KITTI_VOC_TOLERANCE + YOLO_DECIMALS * w, 2 * KITTI_VOC_TOLERANCE + YOLO_DECIMALS * h))


def test_hand_worked_lines_of_each_format(tmp_path: Path) -> None:
    """One box, x 24..40 and y 12..36 on a 64 x 48 image, as each format spells it."""
    kitti = tmp_path / "kitti"
    make_image(kitti / "images" / "a.png", (64, 48))
    (kitti / "labels").mkdir()
    (kitti / "labels" / "a.txt").write_text("fist 0.5 1 -2 24 12 40 36 1.5 0.5 0.7 3 4 5 0.1\n")
    (box,) = read_kitti_splits(kitti)["all"][0].boxes
    assert (box.label, box.x1, box.y1, box.x2, box.y2) == ("fist", 24, 12, 40, 36)

    yolo = tmp_path / "yolo"
    make_image(yolo / "train" / "images" / "a.png", (64, 48))
    (yolo / "train" / "labels").mkdir()
    (yolo / "train" / "labels" / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (yolo / "data.yaml").write_text("names: [hand, fist]\n")
    (box,) = read_yolo(yolo)["train"][0].boxes
    assert (box.label, box.x1, box.y1, box.x2, box.y2) == ("fist", 24, 12, 40, 36)

    voc = tmp_path / "voc"
    make_image(voc / "JPEGImages" / "a.png", (64, 48))
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>64</width><height>48</height><depth>3</depth></size>"
        "<object><name>fist</name><bndbox><xmin>24</xmin><ymin>12</ymin><xmax>40</xmax><ymax>36</ymax>"
        "</bndbox></object></annotation>")
    (box,) = read_voc(voc)["all"][0].boxes
    assert (box.label, box.x1, box.y1, box.x2, box.y2) == ("fist", 24, 12, 40, 36)

    source = {"train": [ImageAnnotation(kitti / "images" / "a.png", 64, 48, [Box("fist", 24, 12, 40, 36)])]}
    write_kitti_dataset(source, tmp_path / "out_kitti")
    assert (tmp_path / "out_kitti" / "labels" / "a.txt").read_text() == "fist 0 0 0 24 12 40 36 0 0 0 0 0 0 0\n"
    write_yolo(source, tmp_path / "out_yolo", names=["hand", "fist"])
    assert (tmp_path / "out_yolo" / "train" / "labels" / "a.txt").read_text() == \
        "1 0.500000 0.500000 0.250000 0.500000\n"
    write_voc(source, tmp_path / "out_voc")
    xml = (tmp_path / "out_voc" / "Annotations" / "a.xml").read_text()
    for tag, value in (("xmin", 24), ("ymin", 12), ("xmax", 40), ("ymax", 36), ("width", 64), ("height", 48)):
        assert f"<{tag}>{value}</{tag}>" in xml
