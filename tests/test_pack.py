"""The .gkpack training pack: round trip, crops with context, class folders, corruption, CLI."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import typer
from conftest import kitti_line, write_kitti
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from gesturekit.cli.pack import register
from gesturekit.data.classmap import ClassMap
from gesturekit.data.formats.egohands import read_egohands_csv
from gesturekit.data.pack import (
    MAGIC,
    build_classification_pack,
    build_detection_pack,
    class_folder_sources,
    frame_sources,
    open_pack,
)
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError

RED = (220, 30, 30)


def frame(
    path: Path,
    size: tuple[int, int],
    box: tuple[int, int, int, int] | None = None,
    color: tuple[int, int, int] = (40, 40, 40),
) -> Path:
    """A dark frame with a red rectangle filling ``box``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, color)
    if box is not None:
        ImageDraw.Draw(im).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=RED)
    im.save(path, quality=95)
    return path


def annotation(
    path: Path, size: tuple[int, int], boxes: list[Box], group: str | None = None
) -> ImageAnnotation:
    return ImageAnnotation(path, size[0], size[1], boxes, group)


def test_detection_round_trip(tmp_path: Path) -> None:
    big = annotation(
        frame(tmp_path / "src/a/big.jpg", (400, 300), (100, 60, 180, 140)),
        (400, 300),
        [Box("hand", 100, 60, 180, 140), Box("face", 0.5, 1.5, 33.3, 299.0)],
        "v1",
    )
    small = annotation(frame(tmp_path / "src/b/small.png", (90, 70)), (90, 70), [], "v2")
    out = tmp_path / "det.gkpack"
    summary = build_detection_pack(
        {"train": [big], "val": [small]}, out, max_size=200, workers=0, progress=False
    )
    assert (summary.images, summary.boxes, summary.bytes) == (2, 2, out.stat().st_size)
    assert summary.splits == {"train": 1, "val": 1} and summary.classes == {"hand": 1, "face": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.gkpack", "src"]  # no temporary file left

    pack = open_pack(out)
    assert (pack.kind, len(pack), pack.classes, pack.splits) == (
        "detection",
        2,
        ["face", "hand"],
        {"train": 1, "val": 1},
    )
    rec = pack.records("train")[0]
    assert (rec.source, rec.group, rec.orig_size, rec.size) == ("a/big.jpg", "v1", (400, 300), (200, 150))
    assert rec.labels == ("hand", "face")
    for stored, orig in zip(rec.boxes, [(100, 60, 180, 140), (0.5, 1.5, 33.3, 299.0)]):
        back = [v * o / s for v, o, s in zip(stored, rec.orig_size * 2, rec.size * 2)]
        assert back == pytest.approx(orig, abs=0.5)
    image = pack.image(rec.index)
    assert image.dtype == torch.uint8 and image.shape == (3, 150, 200)
    x1, y1, x2, y2 = (int(v) for v in rec.boxes[0])
    inside = image[:, y1 + 3 : y2 - 3, x1 + 3 : x2 - 3].float().mean(dim=(1, 2))
    assert inside[0] > 180 and inside[1] < 70  # the red hand is where its box says
    val = pack.records("val")[0]
    assert val.size == val.orig_size == (90, 70) and val.boxes == ()  # never upscaled
    assert pickle.loads(pickle.dumps(pack)).image(val.index).shape == (3, 70, 90)


def test_annotation_size_mismatch_is_an_error(tmp_path: Path) -> None:
    ann = annotation(frame(tmp_path / "a.jpg", (64, 48)), (640, 480), [])
    with pytest.raises(GesturekitError, match=r"a\.jpg: image is 64x48 but its annotation says 640x480"):
        build_detection_pack({"train": [ann]}, tmp_path / "x.gkpack", 64, workers=0, progress=False)
    assert not (tmp_path / "x.gkpack").exists()


def test_pool_keeps_order(tmp_path: Path) -> None:
    anns = [
        annotation(frame(tmp_path / f"{i:02d}.png", (16, 12), color=(i * 3, 200 - i * 3, 7)), (16, 12), [])
        for i in range(64)
    ]
    build_detection_pack({"train": anns}, tmp_path / "p.gkpack", 16, workers=2, progress=False)
    pack = open_pack(tmp_path / "p.gkpack")
    reds = [pack.image(i)[0].float().mean().item() for i in range(len(pack))]
    assert [r.source for r in pack.records()] == [f"{i:02d}.png" for i in range(64)]
    assert reds == pytest.approx([i * 3 for i in range(64)], abs=3)


def test_classification_crops_with_context(tmp_path: Path) -> None:
    centre = annotation(
        frame(tmp_path / "f1.jpg", (400, 300), (200, 100, 240, 160)),
        (400, 300),
        [Box("like", 200, 100, 240, 160)],
    )
    corner = annotation(
        frame(tmp_path / "f2.jpg", (400, 300), (0, 250, 30, 300)),
        (400, 300),
        [Box("peace", 0, 250, 30, 300), Box("call", 300, 20, 340, 60)],
    )
    cmap = ClassMap({"like": "thumbs_up", "peace": "two"}, default="random")
    sources = frame_sources({"train": [centre], "test": [corner]}, cmap)
    assert [(s.label, s.split) for s in sources] == [
        ("thumbs_up", "train"),
        ("two", "test"),
        ("random", "test"),
    ]
    summary = build_classification_pack(
        sources, tmp_path / "c.gkpack", max_size=100, context=2.0, workers=0, progress=False
    )
    assert summary.classes == {"thumbs_up": 1, "two": 1, "random": 1}
    pack = open_pack(tmp_path / "c.gkpack")
    assert pack.kind == "classification" and pack.meta["context"] == 2.0
    # each box doubled about its centre and squared on its longer side, clipped to x2 <= 399, y2 <= 299
    regions = [(160, 70, 280, 190), (0, 225, 65, 299), (280, 0, 360, 80)]
    for rec, src, (x1, y1, x2, y2) in zip(pack.records(), sources, regions):
        sx, sy = rec.size[0] / (x2 - x1), rec.size[1] / (y2 - y1)
        assert max(rec.size) == min(100, max(x2 - x1, y2 - y1))
        bx1, by1, bx2, by2 = rec.boxes[0]
        want = (src.box[0] - x1, src.box[1] - y1, min(src.box[2], x2) - x1, min(src.box[3], y2) - y1)
        assert (bx1 / sx, by1 / sy, bx2 / sx, by2 / sy) == pytest.approx(want, abs=0.5)
        assert rec.label == src.label and rec.orig_size == (400, 300)
    first = pack.records()[0]
    assert first.size == (100, 100)  # 120 px square crop shrunk to 100
    crop = pack.image(0)
    bx1, by1, bx2, by2 = (int(v) for v in first.boxes[0])
    assert crop[0, by1 + 3 : by2 - 3, bx1 + 3 : bx2 - 3].float().mean() > 180
    assert crop[0, :, : bx1 - 3].float().mean() < 70  # context around the hand is kept


def class_folders(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        for i in range(n):
            frame(root / name / f"{i:03d}.jpg", (20 + i % 5, 30))
    return root


def test_class_folders_holdout_and_cap(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "crops", {"fist": 20, "like": 10, "none": 12})
    cmap = ClassMap({"like": "thumbs_up", "fist": "fist"}, default="random")
    sources = class_folder_sources(root, cmap, holdout=0.2, max_per_class=5, seed=0)
    by = {
        (lab, split): [s.image.name for s in sources if (s.label, s.split) == (lab, split)]
        for lab in ("fist", "thumbs_up", "random")
        for split in ("train", "test")
    }
    assert {k: len(v) for k, v in by.items()} == {
        ("fist", "train"): 5,
        ("fist", "test"): 4,
        ("thumbs_up", "train"): 5,
        ("thumbs_up", "test"): 2,
        ("random", "train"): 5,
        ("random", "test"): 2,
    }
    assert not set(by["fist", "train"]) & set(by["fist", "test"])
    assert sources == class_folder_sources(root, cmap, holdout=0.2, max_per_class=5, seed=0)
    other = class_folder_sources(root, cmap, holdout=0.2, max_per_class=5, seed=1)
    assert [s.image for s in other if s.split == "test"] != [s.image for s in sources if s.split == "test"]
    uncapped = class_folder_sources(root, None, holdout=0.2, seed=0)
    assert [s.image for s in uncapped if s.split == "test"] == [s.image for s in sources if s.split == "test"]
    assert len(uncapped) == 42 and {s.label for s in uncapped} == {"fist", "like", "none"}
    subset = class_folder_sources(root, cmap, holdout=0.2, max_per_class=5, seed=0, folders=["like", "none"])
    assert subset == [s for s in sources if s.image.parent.name in ("like", "none")]  # the same draw per folder
    with pytest.raises(GesturekitError, match=r"crops: no class folder 'palm' \(folders: fist, like, none\)$"):
        class_folder_sources(root, cmap, folders=["like", "palm"])

    build_classification_pack(sources, tmp_path / "c.gkpack", max_size=24, workers=0, progress=False)
    pack = open_pack(tmp_path / "c.gkpack")
    rec = pack.records("train")[0]
    assert rec.boxes[0] == (0.0, 0.0, float(rec.size[0]), float(rec.size[1]))  # a tight crop: the whole image
    assert max(rec.size) <= 24 and rec.source.startswith("fist/")
    with pytest.raises(GesturekitError, match="no class folders"):
        class_folder_sources(tmp_path / "crops" / "fist")


@pytest.fixture
def small_pack(tmp_path: Path) -> Path:
    anns = [
        annotation(
            frame(tmp_path / f"{i}.jpg", (64, 48), (10, 10, 30, 30)), (64, 48), [Box("hand", 10, 10, 30, 30)]
        )
        for i in range(3)
    ]
    out = tmp_path / "s.gkpack"
    build_detection_pack({"train": anns}, out, 64, workers=0, progress=False)
    return out


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b"not a pack at all", "not a gesturekit pack"),
        (lambda b: b[:-10], "truncated"),
        (lambda b: b + b"\0", "truncated or padded"),
        (lambda b: MAGIC[:6] + b"\x00\x09" + b[8:], "unsupported pack version"),
        (lambda b: b[:40] + bytes([b[40] ^ 0xFF]) + b[41:], "corrupt pack index"),
    ],
)
def test_corrupt_pack_names_the_file(small_pack: Path, damage, message: str) -> None:
    small_pack.write_bytes(damage(small_pack.read_bytes()))
    with pytest.raises(GesturekitError, match=message) as err:
        open_pack(small_pack)
    assert str(small_pack) in str(err.value)


def test_corrupt_image_and_missing_pack(small_pack: Path) -> None:
    pack = open_pack(small_pack)
    rec = pack.record(1)
    data = bytearray(small_pack.read_bytes())
    start = len(data) - sum(r.length for r in pack.records()) + rec.offset
    data[start : start + rec.length] = b"\x00" * rec.length
    small_pack.write_bytes(bytes(data))
    pack = open_pack(small_pack)
    assert pack.image(0).shape == (3, 48, 64)
    with pytest.raises(GesturekitError, match=rf"{small_pack}: record 1 \(1.jpg\): unreadable image"):
        pack.image(1)
    with pytest.raises(GesturekitError, match="pack not found"):
        open_pack(small_pack.with_name("missing.gkpack"))


def test_real_egohands_pack_size(data_root: Path, tmp_path: Path) -> None:
    anns = read_egohands_csv(data_root / "egohands")["train"][:12]
    summary = build_detection_pack({"train": anns}, tmp_path / "ego.gkpack", 512, workers=0, progress=False)
    pack = open_pack(tmp_path / "ego.gkpack")
    assert summary.images == 12 and summary.boxes == sum(len(a.boxes) for a in anns)
    assert 12 * 10_000 < summary.bytes < 12 * 45_000  # ~28 KB a 512x288 frame at quality 90
    for ann, rec in zip(anns, pack.records()):
        assert rec.orig_size == (640, 360) and rec.size == (512, 288) and rec.group == ann.group
        want = [(b.x1 * 0.8, b.y1 * 0.8, b.x2 * 0.8, b.y2 * 0.8) for b in ann.boxes]
        assert [tuple(b) for b in rec.boxes] == [pytest.approx(w, abs=1e-3) for w in want]
    assert pack.image(0).shape == (3, 288, 512)


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def test_cli_packs_kitti_and_class_folders(tmp_path: Path, cli: typer.Typer) -> None:
    kitti = write_kitti(
        tmp_path / "kitti",
        {"a.jpg": [kitti_line("hand", 4, 4, 20, 30)], "b.jpg": []},
        {"train": ["a.jpg"], "val": ["b.jpg"]},
    )
    runner = CliRunner()
    res = runner.invoke(
        cli, ["pack", str(kitti), "-o", str(tmp_path / "d.gkpack"), "--splits", "train", "--max-size", "32"]
    )
    assert res.exit_code == 0, res.output
    assert "1 images, 1 boxes" in res.output
    assert open_pack(tmp_path / "d.gkpack").records()[0].boxes == ((2.0, 2.0, 10.0, 15.0),)

    crops = class_folders(tmp_path / "crops", {"like": 10, "ok": 10})
    res = runner.invoke(
        cli,
        [
            "pack",
            str(crops),
            "-o",
            str(tmp_path / "c.gkpack"),
            "--kind",
            "classification",
            "--class-map-preset",
            "hagrid-gesturenet",
            "--holdout",
            "0.3",
            "--max-per-class",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    pack = open_pack(tmp_path / "c.gkpack")
    assert pack.classes == ["ok", "thumbs_up"] and pack.splits == {"test": 6, "train": 8}

    res = runner.invoke(
        cli,
        [
            "pack",
            str(kitti),
            str(crops),
            "-o",
            str(tmp_path / "m.gkpack"),
            "--kind",
            "classification",
            "--splits",
            "train",
        ],
    )
    assert res.exit_code == 0, res.output
    assert open_pack(tmp_path / "m.gkpack").classes == ["hand", "like", "ok"]

    res = runner.invoke(cli, ["pack", str(crops), "-o", str(tmp_path / "x.gkpack")])
    assert isinstance(res.exception, GesturekitError) and "class folders have no boxes" in str(res.exception)
    res = runner.invoke(cli, ["pack", str(kitti), "-o", str(tmp_path / "x.gkpack"), "--splits", "test"])
    assert isinstance(res.exception, GesturekitError) and "no split 'test'" in str(res.exception)
