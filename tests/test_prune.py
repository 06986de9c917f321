"""Structured pruning: group equalisation, physical channel removal, pruned checkpoints, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from conftest import random_detector

from gesturekit.cli.prune import prune as prune_command
from gesturekit.engine.checkpoint import save_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.models import create_model
from gesturekit.models.metadata import classifier_metadata
from gesturekit.optimize.prune import (
    ChannelSelection,
    equalize,
    kept_count,
    layer_widths,
    plan_pruning,
    prune_model,
    rebuild_pruned,
    save_pruned_checkpoint,
)
from gesturekit.optimize.restore import load_pruned_checkpoint

SIZE = 64


def _detector() -> nn.Module:
    return random_detector(SIZE).eval()


class TwoBranches(nn.Module):
    """``head(relu(a(x) + b(x)))``: a and b are coupled by the add and must keep the same channels."""

    def __init__(self, a_norms: list[float], b_norms: list[float]) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, len(a_norms), 1, bias=False)
        self.b = nn.Conv2d(3, len(b_norms), 1, bias=False)
        self.head = nn.Conv2d(len(a_norms), 2, 1)
        with torch.no_grad():  # every weight of channel c is norm_c / sqrt(3): the channel's L2 norm is norm_c
            self.a.weight.copy_(torch.tensor(a_norms)[:, None, None, None].expand(-1, 3, 1, 1) / math.sqrt(3))
            self.b.weight.copy_(torch.tensor(b_norms)[:, None, None, None].expand(-1, 3, 1, 1) / math.sqrt(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.a(x) + self.b(x)))


A_NORMS = [1.0] * 4 + [1.0] * 4 + [0.1] * 4 + [0.1] * 4
B_NORMS = [1.0] * 4 + [0.1] * 4 + [0.8] * 4 + [0.1] * 4


@pytest.mark.parametrize("mode, kept", [
    ("union", list(range(12))),            # max: 1, 1, 0.8, 0.1
    ("intersection", list(range(4))),      # min: 1, 0.1, 0.1, 0.1
    ("arithmetic_mean", list(range(8))),   # 1, 0.55, 0.45, 0.1
    ("geometric_mean", list(range(4))),    # 1, 0.32, 0.28, 0.1
])
def test_equalization_modes_on_a_residual_group(mode: str, kept: list[int]) -> None:
    model = TwoBranches(A_NORMS, B_NORMS)
    _, plans = plan_pruning(model, torch.randn(1, 3, 8, 8), threshold=0.5,
                            selection=ChannelSelection(equalization=mode, min_channels=1, granularity=1))
    assert len(plans) == 1 and plans[0].keep == kept
    assert set(plans[0].layers) == {"a", "b"}


def test_equalize_ignores_layers_that_miss_a_channel() -> None:
    scores = torch.tensor([[1.0, 0.2, math.nan], [0.5, 0.4, 0.3]])
    assert torch.allclose(equalize(scores, "union"), torch.tensor([1.0, 0.4, 0.3]))
    assert torch.allclose(equalize(scores, "intersection"), torch.tensor([0.5, 0.2, 0.3]))
    assert torch.allclose(equalize(scores, "arithmetic_mean"), torch.tensor([0.75, 0.3, 0.3]))
    assert torch.allclose(equalize(scores, "geometric_mean"), torch.tensor([0.5 ** 0.5, 0.08 ** 0.5, 0.3]))


def test_kept_count_respects_min_channels_and_granularity() -> None:
    importance = torch.tensor([0.9] * 5 + [0.01] * 27)
    assert kept_count(importance, 0.5, min_channels=1, granularity=8) == 8
    assert kept_count(importance, 0.5, min_channels=12, granularity=8) == 16
    assert kept_count(importance, 0.5, min_channels=1, granularity=1) == 5
    assert kept_count(torch.full((6,), 0.01), 0.5, min_channels=8, granularity=8) == 6


def test_prune_detector_removes_channels_and_reloads(tmp_path) -> None:
    model = _detector()
    before = layer_widths(model)
    x = torch.randn(1, 3, SIZE, SIZE)
    report = prune_model(model, x, threshold=0.7, selection=ChannelSelection("intersection", granularity=8))

    after = layer_widths(model)
    narrowed = {n for n in after if after[n] < before[n]}
    assert len(narrowed) > 10
    assert all(after[n] % 8 == 0 and after[n] >= 8 for n in narrowed)
    assert after["heads.8.coverage"] == 1 and after["heads.8.bbox"] == 4
    assert model.backbone.stages[0][0][0].in_channels == 3
    assert report.after.params < 0.8 * report.before.params
    assert report.after.macs < report.before.macs and report.after.onnx_bytes < report.before.onnx_bytes
    assert report.layers["heads.8.coverage"] == (1, 1)
    assert model.metadata["pruned"] is True
    assert model.metadata["pruned_channels"] == {n: after[n] for n in narrowed}

    boxes, scores = model.export_forward(x)
    assert boxes.shape == (1, (SIZE // 8) ** 2, 4) and scores.shape == (1, (SIZE // 8) ** 2, 1)
    assert isinstance(model(x)[0]["boxes"], torch.Tensor)

    saved = report.save(tmp_path / "report.json")
    assert json.loads(saved.read_text())["reduction_percent"]["params"] > 20
    path = save_pruned_checkpoint(tmp_path / "pruned.pt", model, report)
    assert set(torch.load(path, weights_only=True)) >= {"model", "metadata", "prune_report"}
    reloaded = load_pruned_checkpoint(path)
    assert layer_widths(reloaded) == after
    for got, expected in zip(reloaded.export_forward(x), (boxes, scores)):
        assert torch.equal(got, expected)


def test_prune_classifier_keeps_its_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("gesturenet", num_classes=6, pretrained=False).eval()
    model.metadata = classifier_metadata("gesturenet", {"num_classes": 6}, list("abcdef"), SIZE, {})
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.0, 1.0)
    x = torch.randn(2, 3, SIZE, SIZE)
    report = prune_model(model, x[:1], threshold=0.3,
                         selection=ChannelSelection("geometric_mean", criterion="bn_scale"))
    assert report.after.params < report.before.params
    assert model.classifier.out_features == 6
    assert model.classifier.in_features == model.backbone.stages[-1][-1][0].out_channels
    probs = model.export_forward(x)
    assert probs.shape == (2, 6) and torch.allclose(probs.sum(1), torch.ones(2))


def test_rebuild_rejects_records_that_do_not_fit() -> None:
    with pytest.raises(GesturekitError, match="no such"):
        rebuild_pruned(_detector(), {"backbone.nope": 8})
    with pytest.raises(GesturekitError, match="only 64"):
        rebuild_pruned(_detector(), {"heads.8.tower.3.0": 128})


def test_prune_cli(tmp_path) -> None:
    model = _detector()
    source = save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "metadata": model.metadata,
                                                    "spec": {"model": {"arch": "detectnet_v2"}}})
    app = typer.Typer()
    app.command()(prune_command)
    out = tmp_path / "pruned.pt"
    result = CliRunner().invoke(app, ["-m", str(source), "-o", str(out), "-pth", "0.7", "-eq", "intersection",
                                      "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "ONNX size" in result.output and "%" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["settings"]["equalization"] == "intersection" and report["input_shape"] == [1, 3, SIZE, SIZE]
    assert report["after"]["params"] < report["before"]["params"]
    assert load_pruned_checkpoint(out).metadata["pruned"] is True


def test_channel_selection_rejects_unknown_settings() -> None:
    with pytest.raises(GesturekitError, match="equalization: unknown mode 'max'"):
        ChannelSelection("max")  # type: ignore[arg-type]
    with pytest.raises(GesturekitError, match="criterion: unknown criterion 'l1'"):
        ChannelSelection(criterion="l1")  # type: ignore[arg-type]
    with pytest.raises(GesturekitError, match=">= 1"):
        ChannelSelection(granularity=0)
