from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_image, write_egohands_release, write_kitti, kitti_line
from gesturekit.cli.main import app
from gesturekit.data.classmap import PRESETS, ClassMap, build_class_map, parse_class_map
from gesturekit.data.convert import convert, read_source
from gesturekit.data.formats.kitti import read_kitti_dataset, read_kitti_splits
from gesturekit.data.validate import validate_kitti
from gesturekit.errors import GesturekitError

runner = CliRunner()


def _count(splits) -> tuple[int, int]:
    return sum(len(v) for v in splits.values()), sum(len(a.boxes) for v in splits.values() for a in v)


def test_egohands_csv_converts_to_400_images_1148_boxes(data_root: Path, tmp_path: Path):
    report = convert("egohands-csv", data_root / "egohands", tmp_path / "out")
    assert report.method == "keep" and report.notes == []
    back = read_kitti_splits(tmp_path / "out")
    assert _count(back) == (400, 1148)
    assert {k: len(v) for k, v in back.items()} == {"test": 40, "train": 360}
    groups = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert len(groups) == 400 and set(groups.values()) == {a.group for v in back.values() for a in v}
    assert validate_kitti(tmp_path / "out", ["hand"]).ok


def test_hagrid_converts_464_images_with_every_box(data_root: Path, tmp_path: Path):
    labels: Counter[str] = Counter()
    for path in (data_root / "hagrid" / "annotations").glob("*/*.json"):
        for entry in json.loads(path.read_text()).values():
            labels.update(entry["labels"])
    report = convert("hagrid", data_root / "hagrid", tmp_path / "raw")
    back = read_kitti_splits(tmp_path / "raw")
    assert _count(back) == (464, sum(labels.values()))
    assert Counter(b.label for v in back.values() for a in v for b in a.boxes) == labels
    assert set(back) == {"test", "val"} and report.method == "keep"

    convert("hagrid", data_root / "hagrid", tmp_path / "hand", split="group", class_map=PRESETS["hagrid-hand"])
    hand = read_kitti_splits(tmp_path / "hand")
    assert _count(hand) == (464, sum(labels.values()))
    assert {b.label for v in hand.values() for a in v for b in a.boxes} == {"hand"}
    assert not {a.group for a in hand["train"]} & {a.group for a in hand["val"]}

    convert("hagrid", data_root / "hagrid", tmp_path / "gn", class_map=PRESETS["hagrid-gesturenet"])
    gn = Counter(b.label for v in read_kitti_splits(tmp_path / "gn").values() for a in v for b in a.boxes)
    assert gn == {
        "thumbs_up": labels["like"], "fist": labels["fist"], "stop": labels["palm"] + labels["stop"],
        "ok": labels["ok"], "two": labels["peace"],
        "random": sum(labels.values()) - sum(labels[k] for k in ("like", "fist", "palm", "stop", "ok", "peace")),
    }


def test_class_map_parsing_and_presets():
    assert parse_class_map(" like = thumbs_up ,palm=stop,") == {"like": "thumbs_up", "palm": "stop"}
    for bad, message in (("like", "expected SOURCE=TARGET"), ("=x", "expected SOURCE=TARGET"),
                         ("a=b c", "contains whitespace"), ("a=b,a=c", "mapped to both"), (",", "no SOURCE=TARGET")):
        with pytest.raises(GesturekitError, match=message):
            parse_class_map(bad)
    cmap = build_class_map("hagrid-gesturenet", "no_gesture=hand")
    assert [cmap(x) for x in ("like", "peace", "no_gesture", "call")] == ["thumbs_up", "two", "hand", "random"]
    assert build_class_map(None, None) is None
    assert build_class_map(None, "a=b")("c") == "c"
    assert ClassMap({"a": "b", "zz": "y"}).unused(["a", "c"]) == ["zz"]
    with pytest.raises(GesturekitError, match="unknown class map preset"):
        build_class_map("nope")


def test_original_egohands_converts_with_group_split_and_reports_drops(tmp_path: Path):
    square = [(10, 5), (30, 5), (30, 25), (10, 25)]
    videos = {f"VID_{v}": [(n, {"myleft": square, "yourright": [(1, 1), (1, 9)]}) for n in (1, 2, 3)] for v in "ABCD"}
    root = write_egohands_release(tmp_path / "ego", videos)
    report = convert("egohands", root, tmp_path / "out", val_fraction=0.25)
    assert report.method == "group"
    assert report.notes == ["dropped 12 EgoHands polygons whose box is empty inside the image"]
    splits = read_kitti_splits(tmp_path / "out")
    assert {k: len(v) for k, v in splits.items()} == {"train": 9, "val": 3}
    assert not {a.group for a in splits["train"]} & {a.group for a in splits["val"]}
    assert len({a.image.name for v in splits.values() for a in v}) == 12  # frame_0001.jpg x 4 videos


def test_clipping_and_unused_class_map_are_reported(tmp_path: Path):
    src = write_kitti(tmp_path / "src", {
        "a.jpg": [kitti_line("hand", -5, 2, 10, 60), kitti_line("hand", 100, 100, 120, 120)],
        "b.jpg": [kitti_line("fist", 1, 1, 5, 5)],
    }, {"train": ["a.jpg", "b.jpg"]})
    report = convert("kitti", src, tmp_path / "out", class_map=build_class_map(None, "hand=palm,likee=x"))
    assert report.notes[0] == "--class-map: class 'likee' never occurs in " + str(src)
    assert report.notes[1] == "clipped 1 boxes to their image"
    assert report.notes[2].startswith("dropped 1 boxes lying wholly outside their image: a.jpg: palm 100,100,120,120")
    [a, b] = read_kitti_dataset(tmp_path / "out", "train")
    assert [(x.label, x.x1, x.y1, x.x2, x.y2) for x in a.boxes] == [("palm", 0, 2, 10, 48)]
    assert b.boxes[0].label == "fist"


def test_source_errors_are_one_line(tmp_path: Path):
    with pytest.raises(GesturekitError, match="not found"):
        read_source("yolo", tmp_path / "missing")
    with pytest.raises(GesturekitError, match="unknown format 'coco'"):
        read_source("coco", tmp_path)
    make_image(tmp_path / "images" / "x.jpg")
    with pytest.raises(GesturekitError, match="has no groups"):
        convert("kitti", write_kitti(tmp_path / "k", {"x.jpg": []}), tmp_path / "o", split="group")


def test_cli_convert_validate_stats(data_root: Path, tmp_path: Path):
    out = tmp_path / "ego"
    res = runner.invoke(app, ["data", "convert", "--format", "egohands-csv", str(data_root / "egohands"),
                              "-o", str(out), "--split", "group", "--val-fraction", "0.2", "--seed", "1",
                              "--class-map", "hand=hand,palm=stop"])
    assert res.exit_code == 0, res.output
    assert "400 images, 1148 boxes" in res.output
    assert "warning: --class-map: class 'palm' never occurs" in res.output
    res = runner.invoke(app, ["data", "validate", str(out), "--classes", "hand"])
    assert res.exit_code == 0 and res.output.startswith("ok: ")
    res = runner.invoke(app, ["data", "stats", str(out), "--json"])
    stats = json.loads(res.output)
    assert (stats["images"], stats["boxes"], stats["classes"]) == (400, 1148, {"hand": 1148})
    assert set(stats["splits"]) == {"train", "val", "test"} and stats["splits"]["test"]["images"] == 40
    res = runner.invoke(app, ["data", "stats", str(out)])
    assert res.exit_code == 0 and "box sizes" in res.output and "64-128" in res.output

    res = runner.invoke(app, ["data", "validate", str(out), "--classes", "fist"])
    assert res.exit_code == 1 and "unknown class 'hand'" in res.output and "1148 problems" in res.output
    res = runner.invoke(app, ["data", "convert", "-f", "egohands-csv", str(data_root / "egohands"), "-o", str(out)])
    assert res.exit_code == 1 and isinstance(res.exception, GesturekitError)
    assert "--overwrite" in str(res.exception)
    res = runner.invoke(app, ["data", "convert", "-f", "voc", str(data_root / "egohands"), "-o", str(tmp_path / "v")])
    assert isinstance(res.exception, GesturekitError) and "not a Pascal VOC dataset" in str(res.exception)
    res = runner.invoke(app, ["data", "convert", "-f", "coco", "x", "-o", "y"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["data"])
    assert "convert" in res.output and "validate" in res.output and "stats" in res.output
