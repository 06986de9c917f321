"""CI training on real data: a tiny detector and a custom-gesture classifier, trained on the CPU for
a few iterations, then evaluated, exported and run through ``gesturekit infer``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gesturekit.cli.main import app
from gesturekit.data.convert import convert

runner = CliRunner()


def _invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _losses(results: Path) -> list[float]:
    return [json.loads(line)["loss"]["total"] for line in (results / "metrics.jsonl").read_text().splitlines()]


def _few_egohands(data_root: Path, tmp_path: Path, count: int = 4) -> Path:
    """A KITTI dataset of ``count`` real EgoHands frames, all in the splits train and test."""
    full = tmp_path / "egohands_full"
    convert("egohands-csv", data_root / "egohands", full, split="keep")
    out = tmp_path / "egohands"
    shutil.copytree(full, out, ignore=shutil.ignore_patterns("splits"))
    names = (full / "splits" / "test.txt").read_text().split()[:count]
    (out / "splits").mkdir()
    for split in ("train", "test"):
        (out / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return out


def test_detector_trains_and_evaluates_on_real_frames(data_root: Path, tmp_path: Path) -> None:
    dataset = _few_egohands(data_root, tmp_path)
    spec = {
        "dataset": {"train": [str(dataset)], "classes": ["hand"]},
        "augmentation": {"input_size": 192, "scale_range": [0.9, 1.1], "translate": 0.05,
                         "mosaic": 0.5},  # half the samples mosaics: train_task's combine path
        "model": {"backbone": "mobilenet_v2", "pretrained": True},
        "training": {"epochs": 6, "batch_size_per_gpu": 4, "num_workers": 0, "precision": "fp32",
                     "checkpoint_interval": 3, "validation_interval": 3,
                     "learning_rate": {"max_learning_rate": 3.0e-3, "min_learning_rate": 1.0e-4,
                                       "soft_start": 0.1, "annealing": 0.8}},
        "postprocessing": {"coverage_threshold": 0.001},  # a 6-epoch model's coverage stays low: rank its candidates
        "evaluation": {"datasets": [str(dataset)], "split": "test"},
    }
    spec_file = tmp_path / "detector.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    results = tmp_path / "run"
    _invoke("train", "detector", "-e", spec_file, "-r", results)
    losses = _losses(results)
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]

    out = _invoke("evaluate", "detector", "-e", spec_file, "-m", results / "last.pt", "-o", tmp_path / "eval")
    assert "AP@0.5" in out
    report = json.loads((tmp_path / "eval" / "egohands_test.json").read_text())
    boxes = sum(len((dataset / "labels" / f"{Path(n).stem}.txt").read_text().splitlines())
                for n in (dataset / "splits" / "test.txt").read_text().split())
    assert report["num_images"] == 4 and report["per_class"]["hand"]["num_gts"] == boxes > 4
    # ranked candidates on its own training frames: a model that learned nothing scores about 0 (0.07 measured)
    assert report["per_class"]["hand"]["num_detections"] > 0 and report["ap50"] > 0.02
    assert (tmp_path / "eval" / "egohands_test_pr.png").read_bytes()[:4] == b"\x89PNG"


def test_custom_gestures_train_from_folders_and_infer_reports_them(data_root: Path, tmp_path: Path) -> None:
    crops = data_root / "hagrid" / "crops"
    custom = {"rock_on": "rock", "phone_call": "call", "flat_palm": "palm"}
    folders = tmp_path / "gestures"
    for label, source in custom.items():
        (folders / label).mkdir(parents=True)
        for image in sorted((crops / source).iterdir())[:12]:
            shutil.copy(image, folders / label / image.name)
    spec = {
        "dataset": {"train": [str(folders)], "classes": list(custom)},
        "augmentation": {"input_size": 96},
        "training": {"epochs": 2, "batch_size_per_gpu": 12, "num_workers": 0, "precision": "fp32"},
    }
    spec_file = tmp_path / "classifier.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    results = tmp_path / "run"
    _invoke("train", "classifier", "-e", spec_file, "-r", results)
    assert len(_losses(results)) == 2

    onnx_file = tmp_path / "custom.onnx"
    _invoke("export", "-m", results / "last.pt", "-o", onnx_file)
    frames = tmp_path / "frames"
    frames.mkdir()
    for image in sorted((data_root / "hagrid" / "frames").iterdir())[:3]:
        shutil.copy(image, frames / image.name)
    predictions = tmp_path / "preds.jsonl"
    _invoke("infer", frames, "--classifier", onnx_file, "--out-json", predictions, "--quiet")
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert sorted(line["image"] for line in lines) == sorted(p.name for p in frames.iterdir())
    gestures = [d["gesture"] for line in lines for d in line["detections"] if d["gesture"] is not None]
    assert gestures and set(gestures) <= set(custom)
