"""Model cards: every field read back from the file it came from, on the shipped zoo models; the Markdown
layout (one evaluation row per set); ``gesturekit models card --json / --measure``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gesturekit.cli.main import app
from gesturekit.evaluation.cards import LICENCES, build_card, card_markdown
from gesturekit.evaluation.graph_stats import graph_stats
from gesturekit.evaluation.throughput import THROUGHPUT_FILE, model_input
from gesturekit.models.metadata import read_onnx_metadata
from gesturekit.models.zoo import ZOO_ROOT, zoo_names


def check_card_against_files(card: dict, folder: Path) -> None:
    """Each section of ``card`` equals what its source file in ``folder`` says (the test of issue #27)."""
    meta = read_onnx_metadata(folder / "model.onnx")
    model = card["model"]
    assert (model["task"], model["classes"], model["architecture"], model["input_size"]) == (
        meta["task"], list(meta["classes"]), meta["arch"], meta["input_size"])
    assert model["backbone"] == meta["arch_kwargs"].get("backbone")
    assert model["precision"] == meta.get("precision", "fp32")
    assert model["quantization"] == (meta.get("quantization") or {}).get("mode")
    stats = graph_stats(folder / "model.onnx", (1, *model_input(meta).shape))
    assert (model["parameters"], model["macs"]) == (stats.params, stats.macs) and model["macs"] > 0
    assert model["onnx_bytes"] == (folder / "model.onnx").stat().st_size

    sources = card["sources"]
    training = card["training"]
    if sources["training"] == "train_summary.json":
        summary = json.loads((folder / "train_summary.json").read_text())
    else:
        assert sources["training"] == "model.onnx (metadata.training)"
        summary = meta["training"]
    assert training["epochs"] == summary["epochs"] and training["batch_size"] == summary.get("global_batch_size")
    assert training["precision"] == summary["precision"] and training["wall_time_s"] == summary["wall_time_s"]
    assert training["hardware"] == (summary.get("gpus") or summary.get("device"))
    listed = [d["source"] for d in training["datasets"] for _ in range(d["repeat"])]
    assert listed == summary["dataset"]["train"] and training["images"] == summary["dataset"].get("train_images")
    if (folder / "packs.json").is_file():
        for name, pack in json.loads((folder / "packs.json").read_text()).items():
            assert training["packs"][name] == {k: pack[k] for k in ("images", "boxes", "splits")}

    evaluation = json.loads((folder / "eval.json").read_text())
    assert sources["evaluation"] == "eval.json" and card["evaluation"]["split"] == evaluation["split"]
    assert [r["set"] for r in card["evaluation"]["rows"]] == list(evaluation["datasets"])
    for row in card["evaluation"]["rows"]:
        for column in card["evaluation"]["columns"]:
            assert row[column["key"]] == evaluation["datasets"][row["set"]][column["key"]]

    stored = json.loads((folder / THROUGHPUT_FILE).read_text())["measurements"] \
        if (folder / THROUGHPUT_FILE).is_file() else []
    assert card["throughput"] == stored
    named = " ".join([*listed, *evaluation["datasets"]]).lower()
    assert [x["dataset"] for x in card["licences"]] == [v[0] for k, v in LICENCES.items() if k in named]


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_card_field_comes_from_its_file(name: str) -> None:
    check_card_against_files(build_card(ZOO_ROOT / name), ZOO_ROOT / name)


def test_markdown_is_one_evaluation_table_with_a_row_per_set() -> None:
    card = build_card(ZOO_ROOT / "hand-detector-pruned-int8")
    text = card_markdown(card)
    assert "| evaluation set | AP@0.5 | AP@0.5:0.95 | KITTI AP | images |" in text
    rows = [line for line in text.splitlines() if line.startswith("| `") and line.count("|") == 6]
    assert len(rows) == len(card["evaluation"]["rows"]) >= 3
    assert "best_f1" not in text and "datasets." not in text
    assert "| Training data |" in text and "| Epochs |" in text  # a PTQ model: its source's training
    assert "| Precision | int8 (INT8 QDQ, calibrated) |" in text and "| INT8 calibration | 200 images" in text
    assert "EgoHands (Indiana University) | CC BY 4.0" in text
    classifier = card_markdown(build_card(ZOO_ROOT / "gesture-classifier"))
    assert "| evaluation set | macro-F1 | accuracy | crops |" in classifier
    assert "| class | precision | recall | F1 | crops |" in classifier


def test_models_card_json_and_measure(tmp_path: Path) -> None:
    folder = tmp_path / "gesture-classifier-int8"
    shutil.copytree(ZOO_ROOT / "gesture-classifier-int8", folder)
    (folder / THROUGHPUT_FILE).unlink(missing_ok=True)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "card", str(folder)])
    assert result.exit_code == 0 and "Not measured" in result.output
    result = runner.invoke(app, ["models", "card", str(folder), "--json", "--measure", "--threads", "1"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.output)
    assert [r["batch"] for r in card["throughput"]] == [1, 8]
    assert all(r["images_per_s"] > 0 and r["calls"] >= 5 and r["threads"] == 1 for r in card["throughput"])
    check_card_against_files(card, folder)
    out = tmp_path / "card.md"
    assert runner.invoke(app, ["models", "card", str(folder), "-o", str(out)]).exit_code == 0
    text = out.read_text()
    assert "## Throughput" in text and f"| {card['throughput'][1]['images_per_s']:,.1f} |" in text
    assert yaml.safe_load((folder / "spec.yaml").read_text())  # the card read the folder, never wrote it


def test_a_card_says_how_an_int8_model_got_its_ranges(tmp_path: Path) -> None:
    import torch

    from gesturekit.models import create_model
    from gesturekit.models.metadata import detector_metadata
    from gesturekit.export.qdq import export_qat_onnx
    from gesturekit.optimize.qat import prepare_qat

    kwargs = {"num_classes": 1, "backbone": "mobilenet_v2", "head_channels": 16, "strides": [8]}
    post = {"score_threshold": 0.3, "clustering": "nms", "max_detections": 50}
    torch.manual_seed(0)
    det = create_model("detectnet_v2", **kwargs, pretrained=False, postprocessing=post)
    det.metadata = detector_metadata("detectnet_v2", kwargs, ["hand"], 64, post)
    det = prepare_qat(det).train()
    with torch.no_grad():
        det.export_forward(torch.randn(2, 3, 64, 64))
    export_qat_onnx(det.eval(), tmp_path / "det-qat" / "model.onnx", torch.zeros(1, 3, 64, 64))
    card = build_card(tmp_path / "det-qat")
    text = card_markdown(card)
    assert "# det-qat" in text and "| Precision | int8 (INT8 QDQ, quantization-aware trained) |" in text
    assert card["training"] is None and card["evaluation"] is None and "Not measured" in text
