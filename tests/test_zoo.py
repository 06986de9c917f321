"""The model zoo: lookup, listing, ``gesturekit models`` (the cards: tests/test_cards.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from gesturekit.cli.models import app
from gesturekit.errors import GesturekitError
from gesturekit.evaluation.cards import build_card, card_markdown
from gesturekit.export.onnx import export_onnx
from gesturekit.models import create_model, zoo
from gesturekit.models.metadata import classifier_metadata, detector_metadata

DET_KWARGS = {"num_classes": 1, "backbone": "mobilenet_v2", "head_channels": 16, "strides": [8]}
POST = {"score_threshold": 0.3, "clustering": "dbscan", "dbscan_eps": 0.3, "max_detections": 50}
SUMMARY = {
    "epochs": 80, "completed_epochs": 80, "batch_size_per_gpu": 64, "world_size": 2, "global_batch_size": 128,
    "precision": "bf16", "amp_dtype": "bfloat16", "optimizer": "adamw", "ema_decay": 0.998, "images_seen": 1234567,
    "wall_time_s": 4000.0, "images_per_s": 812.25, "device": "NVIDIA H100 80GB HBM3",
    "metric_key": "ap50", "best_metric": 0.91, "best_epoch": 75,
}
EVAL = {"split": "test", "voc": {"ap50": 0.8765, "ap": 0.5}, "coco": {"ap50_95": 0.41}, "images_per_s": 950.5,
        "per_class": [{"class": "hand", "ap": 0.5}]}


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory) -> Path:
    """A zoo with a complete detector, a classifier with only its checkpoint, and a stray folder."""
    root = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    det = create_model("detectnet_v2", **DET_KWARGS, pretrained=False, postprocessing=POST)
    det.metadata = detector_metadata("detectnet_v2", DET_KWARGS, ["hand"], 384, POST)
    (root / "hand-detector").mkdir()
    torch.save({"model": det.state_dict(), "metadata": det.metadata}, root / "hand-detector" / "model.pt")
    export_onnx(det.eval(), root / "hand-detector" / "model.onnx", torch.zeros(1, 3, 64, 64))
    (root / "hand-detector" / "eval.json").write_text(json.dumps(EVAL))
    (root / "hand-detector" / "train_summary.json").write_text(json.dumps(SUMMARY))
    spec = {"dataset": {"train": ["/data/egohands_kitti"], "val": ["/data/egohands_kitti"]}, "training": {}}
    (root / "hand-detector" / "spec.yaml").write_text(yaml.safe_dump(spec))

    cls = create_model("gesturenet", num_classes=2, pretrained=False)
    training = {"epochs": 3, "precision": "fp32", "batch_size_per_gpu": 8}
    cls.metadata = classifier_metadata("gesturenet", {"num_classes": 2}, ["fist", "random"], 96,
                                       {"margin_px": 8, "enlarge_ratio": 1.5, "square": False},
                                       training=training, metrics={"accuracy": 0.75})
    (root / "gesture-classifier").mkdir()
    torch.save({"model": cls.state_dict(), "metadata": cls.metadata}, root / "gesture-classifier" / "model.pt")
    (root / "notes").mkdir()
    (root / "notes" / "README.md").write_text("not a model")
    return root


@pytest.fixture
def zoo_at(zoo_root, monkeypatch) -> Path:
    monkeypatch.setattr(zoo, "ZOO_ROOT", zoo_root)
    return zoo_root


def test_list_zoo(zoo_at) -> None:
    entries = zoo.list_zoo()
    assert [e.name for e in entries] == ["gesture-classifier", "hand-detector"]
    cls, det = entries
    assert (det.task, det.arch, det.backbone, det.classes, det.input_size) == (
        "detection", "detectnet_v2", "mobilenet_v2", ["hand"], 384)
    assert det.headline == ("voc.ap50", 0.8765) and det.path == zoo_at / "hand-detector"
    assert (cls.task, cls.backbone, cls.input_size, cls.headline) == ("classification", None, 96, ("accuracy", 0.75))


def test_zoo_lookup_errors(zoo_at, tmp_path, monkeypatch) -> None:
    assert zoo.zoo_path("hand-detector") == zoo_at / "hand-detector"
    with pytest.raises(GesturekitError, match=r"unknown zoo model 'notes' \(zoo: gesture-classifier, hand-detector\)"):
        zoo.zoo_path("notes")
    monkeypatch.setattr(zoo, "ZOO_ROOT", tmp_path / "missing")
    assert zoo.list_zoo() == []
    with pytest.raises(GesturekitError, match=r"\(zoo: empty\)"):
        zoo.model_dir("hand-detector")


def test_models_cli(zoo_at, tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "hand-detector" in result.output and "ap50 0.8765" in result.output and "voc" in result.output
    out = tmp_path / "card.md"
    result = runner.invoke(app, ["card", "hand-detector", "-o", str(out)])
    assert result.exit_code == 0 and out.read_text() == card_markdown(build_card(zoo_at / "hand-detector")) + "\n"
    result = runner.invoke(app, ["card", "nope"])
    assert isinstance(result.exception, GesturekitError)


def test_package_turns_a_run_into_a_zoo_entry(tmp_path) -> None:
    import numpy as np
    from typer.testing import CliRunner

    from conftest import random_detector
    from gesturekit.cli.main import app
    from gesturekit.engine.checkpoint import save_checkpoint
    from gesturekit.runtime.loading import load_detector

    model = random_detector(64)
    save_checkpoint(tmp_path / "run" / "best.pt", {"model": model.state_dict(), "metadata": model.metadata})
    (tmp_path / "run" / "train_summary.json").write_text('{"epochs": 3, "precision": "bf16"}')
    result = CliRunner().invoke(app, ["models", "package", str(tmp_path / "run" / "best.pt"),
                                      "-o", str(tmp_path / "zoo" / "tiny")])
    assert result.exit_code == 0, result.output
    entry = tmp_path / "zoo" / "tiny"
    assert {p.name for p in entry.iterdir()} == {"model.pt", "model.onnx", "train_summary.json"}
    detector = load_detector(entry / "model.onnx")
    assert detector.metadata["training"]["epochs"] == 3
    assert len(detector([np.zeros((48, 64, 3), np.uint8)])) == 1
    card = CliRunner().invoke(app, ["models", "card", str(entry)])  # a packaged entry has a card by path
    assert card.exit_code == 0 and "# tiny" in card.output and "| Epochs | 3 |" in card.output
