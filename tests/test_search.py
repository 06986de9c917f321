"""Pruning-threshold search: prune, retrain briefly, evaluate, choose within the AP budget; the CLI mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from conftest import kitti_line, write_kitti
from gesturekit.cli.prune import prune as prune_command
from gesturekit.config.base import validate_spec
from gesturekit.config.specs import DetectorSpec
from gesturekit.engine.checkpoint import save_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.optimize.prune import prune_model, save_pruned_checkpoint
from gesturekit.optimize.restore import load_model_from_checkpoint, load_pruned_checkpoint
from gesturekit.training.search import search_threshold
from gesturekit.training.detector import build_detector


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[DetectorSpec, Path, Path]:
    """A tiny synthetic KITTI dataset, a spec that trains one iteration per epoch on it, and an
    untrained detector checkpoint built from the spec."""
    root = tmp_path_factory.mktemp("search")
    names = [f"{i}.png" for i in range(4)]
    dataset = write_kitti(root / "kitti", {n: [kitti_line("hand", 10, 8, 40, 36)] for n in names},
                          {"train": names, "test": names})
    data = {
        "dataset": {"train": [str(dataset)], "classes": ["hand"]},
        "augmentation": {"input_size": 64},
        "model": {"pretrained": False},
        "training": {"epochs": 5, "batch_size_per_gpu": 2, "num_workers": 0, "precision": "fp32",
                     "max_iterations_per_epoch": 1},
        "evaluation": {"datasets": [str(dataset)], "split": "test"},
    }
    spec = validate_spec(data, DetectorSpec, "test spec")
    spec_file = root / "detector.yaml"
    spec_file.write_text(json.dumps(data))
    torch.manual_seed(0)
    model = build_detector(spec)
    checkpoint = save_checkpoint(root / "best.pt", {"model": model.state_dict(), "metadata": model.metadata,
                                                    "spec": spec.model_dump(mode="json")})
    return spec, checkpoint, spec_file


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_search_chooses_the_largest_threshold_within_the_drop(setup, tmp_path: Path) -> None:
    spec, checkpoint, _ = setup
    baseline_params = 561157  # the unpruned tiny detector (mobilenet_v2, head 64, stride 8)
    seen: list[int] = []

    def fake_ap(model: nn.Module) -> float:  # AP falls linearly with the parameters removed: 0.9 -> 0.5
        assert not model.training
        seen.append(_params(model))
        return 0.5 + 0.4 * _params(model) / baseline_params

    # random init: 0.0 keeps every channel (drop 0), 0.8 keeps ~51% of the params (drop ~19.5 points),
    # 0.9 keeps ~9% (drop ~36 points) and stops the sweep: 0.95 is never tried
    result = search_threshold(checkpoint, spec, fake_ap, target_drop=25.0, thresholds=[0.9, 0.0, 0.8, 0.95],
                              work_dir=tmp_path / "work")
    assert seen[0] == baseline_params and result.baseline_metric == pytest.approx(0.9)
    assert [p.threshold for p in result.points] == [0.0, 0.8, 0.9]
    assert [p.within_target for p in result.points] == [True, True, False]
    assert result.points[0].params == baseline_params and result.points[0].drop == pytest.approx(0.0)
    assert baseline_params > result.points[1].params > result.points[2].params
    assert result.points[1].drop == pytest.approx(40.0 * (1 - result.points[1].params / baseline_params))
    assert result.chosen is result.points[1]
    assert (tmp_path / "work" / "pth_0.8" / "pruned.pt").is_file()
    assert (tmp_path / "work" / "pth_0.8" / "last.pt").is_file()

    curve = json.loads((tmp_path / "work" / "search.json").read_text())
    assert curve["metric"] == "ap50" and curve["chosen_threshold"] == 0.8
    assert curve["baseline"]["params"] == baseline_params
    assert [p["params"] for p in curve["points"]] == [p.params for p in result.points]
    assert (tmp_path / "work" / "search.png").read_bytes()[:4] == b"\x89PNG"


def test_search_rejects_bad_thresholds(setup, tmp_path: Path) -> None:
    spec, checkpoint, _ = setup
    with pytest.raises(GesturekitError, match="thresholds"):
        search_threshold(checkpoint, spec, lambda m: 0.0, 1.0, thresholds=[0.2, 1.5], work_dir=tmp_path)


def test_prune_cli_target_drop(setup, tmp_path: Path) -> None:
    _, checkpoint, spec_file = setup
    app = typer.Typer()
    app.command()(prune_command)
    runner = CliRunner()
    out = tmp_path / "pruned.pt"
    missing = runner.invoke(app, ["-m", str(checkpoint), "-o", str(out), "--target-drop", "1.0"])
    assert missing.exit_code != 0 and "--spec" in str(missing.exception)

    result = runner.invoke(app, ["-m", str(checkpoint), "-o", str(out), "--target-drop", "1.0", "-e",
                                 str(spec_file), "--thresholds", "0.0,0.9", "--retrain-epochs", "1",
                                 "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    assert "threshold search" in result.output and "unpruned" in result.output
    curve = json.loads((tmp_path / "work" / "search.json").read_text())
    assert curve["points"][0]["threshold"] == 0.0 and curve["points"][0]["within_target"]
    chosen = [p for p in curve["points"] if p["within_target"]][-1]
    assert curve["chosen_threshold"] == chosen["threshold"]
    model = load_pruned_checkpoint(out)
    assert _params(model) == chosen["params"]
    assert model.metadata["training"]["epochs"] == 1


def test_retraining_a_pruned_graph_takes_the_specs_loss_and_decoding_options(setup, tmp_path: Path) -> None:
    spec, checkpoint, _ = setup
    model = load_model_from_checkpoint(checkpoint)
    prune_model(model, torch.zeros(1, 3, 64, 64), 0.5)
    pruned = save_pruned_checkpoint(tmp_path / "pruned.pt", model)
    data = spec.model_dump(mode="json")
    data["model"].update(load_graph=True, pretrained_model_file=str(pruned), positive_radius=1.5)
    data["class_weights"] = {"hand": 2.0}
    data["postprocessing"]["coverage_threshold"] = 0.3
    retrained = build_detector(validate_spec(data, DetectorSpec, "retrain spec"))
    assert retrained.metadata["pruned"] is True  # the pruned graph, not a fresh one
    assert retrained.positive_radius == 1.5 and retrained.class_weights.tolist() == [2.0]
    assert retrained.postprocessing["score_threshold"] == 0.3
