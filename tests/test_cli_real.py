"""Every CLI verb of the workflow, through the real command (Typer's runner on the installed app), on real data
and the real zoo: each checks what the verb promises its user, with figures worked out independently."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gesturekit.boxes import box_iou
from gesturekit.cli.main import app
from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.data.pack import open_pack
from gesturekit.evaluation.detection import evaluate_detector_on
from gesturekit.models.zoo import EVAL, zoo_path
from gesturekit.runtime.loading import load_detector

SHIPPED = ["gesture-classifier", "gesture-classifier-int8", "hand-detector", "hand-detector-int8",
           "hand-detector-pruned", "hand-detector-pruned-int8", "hand-verifier"]
HAGRID_TO_GESTURE = {"like": "thumbs_up", "fist": "fist", "palm": "stop", "ok": "ok", "peace": "two", "call": "random"}
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return result.output


def stored(name: str) -> dict:
    return json.loads((zoo_path(name) / EVAL).read_text())


@pytest.fixture(scope="module")
def egohands(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "egohands"
    invoke("data", "convert", "--format", "egohands-csv", data_root / "egohands", "-o", out)
    return out


def test_models_list_shows_the_seven_shipped_models_with_their_eval_json_figure() -> None:
    output = invoke("models", "list")
    rows = {line.split()[1]: line for line in output.splitlines() if line.startswith("│")}
    assert sorted(rows) == SHIPPED
    for name in SHIPPED:
        result = stored(name)
        dataset = next(iter(result["datasets"].values()))
        figure = dataset["ap50"] if result["task"] == "detection" else dataset["accuracy"]
        assert f"{figure:.4f}" in rows[name], (name, rows[name])


@pytest.mark.parametrize("name", SHIPPED)
def test_models_card_of_each_shipped_model(name: str, tmp_path: Path) -> None:
    """The card names the model and gives a row per evaluation set of its eval.json with that set's figures
    (AP@0.5 and KITTI AP of a detector, macro-F1 and accuracy of a classifier); written with -o it is the printed
    card."""
    card = invoke("models", "card", name)
    assert card.startswith(f"# {name}")
    result = stored(name)
    keys = ("ap50", "kitti_ap") if "ap50" in next(iter(result["datasets"].values())) else ("macro_f1", "accuracy")
    for dataset, figures in result["datasets"].items():
        (row,) = [line for line in card.splitlines() if line.startswith(f"| `{dataset}` |")]
        for key in keys:
            assert f"| {figures[key]:.4f} |" in row, (name, dataset, key, row)
    invoke("models", "card", name, "-o", tmp_path / "card.md")
    assert (tmp_path / "card.md").read_text().strip() == card.strip()


def test_evaluate_detector_command_reports_the_zoo_figure(egohands: Path, tmp_path: Path) -> None:
    """``gesturekit evaluate detector`` with the model's own spec, on the EgoHands test split: the JSON it writes
    holds the AP of the model's eval.json."""
    name = "hand-detector-pruned-int8"
    invoke("evaluate", "detector", "-e", zoo_path(name) / "spec.yaml", "-m", name, "-d", egohands,
           "--split", "test", "-o", tmp_path / "eval")
    result = json.loads((tmp_path / "eval" / "egohands_test.json").read_text())
    expected = stored(name)["datasets"]["egohands_test"]
    assert result["num_images"] == 40 and result["per_class"]["hand"]["num_gts"] == 125
    for metric in ("ap50", "ap50_95", "kitti_ap"):
        assert result[metric] == pytest.approx(expected[metric], abs=0.015), metric
    assert (tmp_path / "eval" / "egohands_test_pr.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def gesture_crops(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders of real HaGRID crops named by the classifier's classes: the last 8 files (by name) of six
    HaGRID folders; the held-out 15% is a seeded draw, so some may be training crops: the bar is set low."""
    root = tmp_path_factory.mktemp("cli") / "crops"
    for folder, gesture in HAGRID_TO_GESTURE.items():
        (root / gesture).mkdir(parents=True, exist_ok=True)
        for path in sorted((data_root / "hagrid" / "crops" / folder).iterdir())[-8:]:
            (root / gesture / f"{folder}_{path.name}").symlink_to(path)
    return root


@pytest.mark.parametrize("name", ["gesture-classifier", "gesture-classifier-int8"])
def test_evaluate_classifier_command_on_real_crops(name: str, gesture_crops: Path, tmp_path: Path) -> None:
    invoke("evaluate", "classifier", "-e", zoo_path(name) / "spec.yaml", "-m", name, "-d", gesture_crops,
           "--split", "test", "-o", tmp_path / "eval")
    (result_file,) = (tmp_path / "eval").glob("*.json")
    result = json.loads(result_file.read_text())
    assert result["num_samples"] == 48
    assert {k: v["support"] for k, v in result["per_class"].items()} == {
        "thumbs_up": 8, "fist": 8, "stop": 8, "ok": 8, "two": 8, "random": 8}
    assert result["accuracy"] >= 0.85 and np.array(result["confusion_matrix"]).sum() == 48
    assert list((tmp_path / "eval").glob("*_confusion.png"))


def test_data_pack_detection_keeps_every_real_box_scaled_with_its_image(egohands: Path, tmp_path: Path) -> None:
    out = tmp_path / "ego.gkpack"
    invoke("data", "pack", egohands, "-o", out, "--splits", "test", "--max-size", "320")
    pack = open_pack(out)
    annotations = {a.image.name: a for a in read_kitti_dataset(egohands, "test")}
    assert pack.splits == {"test": 40} and len(annotations) == 40
    for record in pack.records("test"):
        ann = annotations[Path(record.source).name]
        width, height = record.size
        assert (width, height) == (320, 180) and tuple(record.orig_size) == (ann.width, ann.height) == (640, 360)
        image = pack.image(record.index)
        assert tuple(image.shape) == (3, 180, 320)
        expected = np.array([[b.x1 / 2, b.y1 / 2, b.x2 / 2, b.y2 / 2] for b in ann.boxes])  # 640 -> 320
        np.testing.assert_allclose(np.asarray(record.boxes, float), expected, atol=0.01)
        assert list(record.labels) == ["hand"] * len(ann.boxes)


def test_data_pack_classification_holds_out_the_stated_share_of_each_folder(data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "folders"
    counts = {"fist": 37, "like": 21}
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True)
        for path in sorted((data_root / "hagrid" / "crops" / folder).iterdir())[:n]:
            (root / folder / path.name).symlink_to(path)
    out = tmp_path / "crops.gkpack"
    invoke("data", "pack", root, "-o", out, "--kind", "classification", "--max-size", "48", "--holdout", "0.2",
           "--class-map-preset", "hagrid-gesturenet")
    pack = open_pack(out)
    held = {f: math.floor(n * 0.2 + 0.5) for f, n in counts.items()}  # 7 of 37, 4 of 21
    assert pack.splits == {"test": sum(held.values()), "train": sum(counts.values()) - sum(held.values())}
    labels = [r.label for r in pack.records("test")]
    assert sorted(labels) == sorted(["fist"] * held["fist"] + ["thumbs_up"] * held["like"])
    for record in pack.records():
        assert max(record.size) <= 48 and record.boxes[0] == pytest.approx([0, 0, *record.size], abs=0.01)


def test_data_mine_adds_only_boxes_away_from_every_hand(egohands: Path, tmp_path: Path) -> None:
    out = tmp_path / "mined"
    invoke("data", "mine", egohands, "--split", "test", "-m", "hand-detector-pruned-int8", "--max-per-image", "3",
           "-o", out)
    before = {a.image.name: a for a in read_kitti_dataset(egohands, "test")}
    after = read_kitti_dataset(out, "test")
    assert len(after) == 40
    mined = 0
    for ann in after:
        hands = [b for b in ann.boxes if b.label == "hand"]
        others = [b for b in ann.boxes if b.label != "hand"]
        assert [(b.x1, b.y1, b.x2, b.y2) for b in hands] == \
            [(b.x1, b.y1, b.x2, b.y2) for b in before[ann.image.name].boxes]
        assert len(others) <= 3 and {b.label for b in others} <= {"background"}
        if others and hands:
            iou = box_iou(np.array([[b.x1, b.y1, b.x2, b.y2] for b in others]),
                          np.array([[b.x1, b.y1, b.x2, b.y2] for b in hands]))
            assert iou.max() < 0.3
        mined += len(others)
    assert mined > 0


def test_prune_a_shipped_checkpoint(egohands: Path, tmp_path: Path) -> None:
    """Pruning hand-detector's checkpoint removes parameters; the result loads, runs on real frames and still finds
    hands (untrained after pruning, so only a low bar)."""
    out = tmp_path / "pruned.pt"
    invoke("prune", "-m", zoo_path("hand-detector") / "model.pt", "-o", out, "-pth", "0.2",
           "--report", tmp_path / "report.json")
    count = lambda path: sum(v.numel() for k, v in torch.load(path, weights_only=True)["model"].items()  # noqa: E731
                             if "running" not in k and "num_batches" not in k)
    assert count(out) < 0.95 * count(zoo_path("hand-detector") / "model.pt")
    detector = load_detector(out, backend="torch", threads=2)
    frames = [np.asarray(Image.open(a.image).convert("RGB")) for a in read_kitti_dataset(egohands, "test")[:4]]
    assert sum(len(found) for found in detector(frames)) > 0
    assert json.loads((tmp_path / "report.json").read_text())


def test_export_a_shipped_checkpoint_to_onnx_keeps_its_accuracy(egohands: Path, tmp_path: Path) -> None:
    """``gesturekit export`` of hand-detector-pruned's checkpoint passes its parity check on real frames, and the
    ONNX file it writes scores the model's eval.json AP on the EgoHands test frames."""
    out = tmp_path / "detector.onnx"
    invoke("export", "-m", zoo_path("hand-detector-pruned") / "model.pt", "-o", out, "--images",
           egohands / "images", "--num-images", "4")
    result = evaluate_detector_on(load_detector(out, threads=2), [egohands], "test", min_width=4.0,
                                  min_height=4.0)["egohands_test"]
    assert result["ap50"] == pytest.approx(stored("hand-detector-pruned")["datasets"]["egohands_test"]["ap50"],
                                           abs=0.01)


def test_models_average_of_a_model_with_itself_is_the_model(tmp_path: Path) -> None:
    source = zoo_path("hand-detector") / "model.pt"
    invoke("models", "average", source, source, "-o", tmp_path / "soup.pt")
    original = torch.load(source, weights_only=True)["model"]
    soup = torch.load(tmp_path / "soup.pt", weights_only=True)["model"]
    assert soup.keys() == original.keys()
    for key, value in original.items():
        if value.is_floating_point():  # the zoo stores float16 weights; their mean with themselves is exact
            assert torch.equal(soup[key].to(value.dtype), value), key
