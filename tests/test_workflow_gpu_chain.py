"""The GPU workflow's chain end to end on the CPU, on a slice of the real data and one epoch per stage: every
recipe and every piece of wiring the GPU machine will run (v1 -> v2 adding the stride-32 stage -> v3 taught by v2
-> v4 averaged with v3; v3 pruned and retrained; QAT of the average; the classifier) fits the next stage, before
GPU time is spent on it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import REPO_ROOT
from rich.console import Console

from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.workflow.runner import run_workflow

SHORT = ["training.epochs=1", "training.batch_size_per_gpu=4", "training.num_workers=0", "training.precision=fp32",
         "training.checkpoint_interval=1", "training.validation_interval=1", "augmentation.input_size=224"]


def _slice_of_the_gpu_workflow(tmp_path: Path) -> Path:
    """workflows/gesture-gpu.yaml on a few images of each split, one short epoch per training stage, on the CPU."""
    workflow = yaml.safe_load((REPO_ROOT / "workflows" / "gesture-gpu.yaml").read_text())
    workflow["device"] = "cpu"
    splits = {"egohands": ["train", "test"], "hagrid_hand": ["val", "test"], "hagrid_gesture": ["val", "test"],
              "hands_yolo": ["train", "val", "test"], "fingers_yolo": ["train", "val", "test"]}
    for name, dataset in workflow["datasets"].items():
        dataset["limit"] = {split: 6 for split in splits[name]}
    for name in ("cls_crops_gesture", "cls_crops_other", "cls_crops_test"):
        workflow["packs"][name].update(max_per_class=3, holdout=0.002)
    for section in ("detector", "classifier"):
        workflow[section]["overrides"] = [*workflow[section].get("overrides", []), *SHORT]
    for export in (workflow["detector"]["optimized_export"], workflow["classifier"]["export"]):
        export["num_calibration"] = 8
    workflow["throughput"] = {"batches": [1], "seconds": 0.2}
    path = tmp_path / "gesture-gpu-slice.yaml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    return path


def test_the_gpu_workflow_chain_runs_end_to_end_on_a_slice(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GESTUREKIT_DATA", str(data_root))
    monkeypatch.chdir(REPO_ROOT)  # the workflow names its recipes from the repository root
    out = tmp_path / "out"
    outcomes = run_workflow(_slice_of_the_gpu_workflow(tmp_path), out, console=Console(file=open("/dev/null", "w")))
    assert {o.action for o in outcomes} == {"ran"}
    v2 = yaml.safe_load((out / "finetune" / "detector-v2" / "spec.yaml").read_text())
    assert v2["model"]["context_stride"] == 32
    assert v2["model"]["pretrained_model_file"] == str(out / "train" / "detector" / "best.pt")
    soup = load_checkpoint(out / "finetune" / "detector-v4-average" / "model.pt")["metadata"]["weight_average"]
    assert soup["weights"] == [0.5, 0.5] and soup["checkpoints"][1] == str(out / "finetune" / "detector-v3" / "last.pt")
    cards = {p.name.split(".")[0] for p in (out / "cards").glob("*.card.json")}
    assert cards == {"detector-fp32", "detector-pruned-fp32", "detector-pruned-int8", "detector-qat-int8",
                     "classifier-fp32", "classifier-int8"}
    qat = json.loads((out / "cards" / "detector-qat-int8.card.json").read_text())["model"]
    pruned = json.loads((out / "cards" / "detector-pruned-fp32.card.json").read_text())["model"]
    full = json.loads((out / "cards" / "detector-fp32.card.json").read_text())["model"]
    assert qat["quantization"] == "qat" and not qat["pruned"] and qat["parameters"] == full["parameters"]
    assert pruned["pruned"] and pruned["parameters"] < full["parameters"]
    assert (out / "report.html").is_file()
