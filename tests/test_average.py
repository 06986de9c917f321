"""Weight averaging of checkpoints (``gesturekit models average``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import random_detector
from typer.testing import CliRunner

from gesturekit.cli.main import app
from gesturekit.engine.checkpoint import load_checkpoint, save_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.optimize.average import average_checkpoints
from gesturekit.optimize.restore import load_model_from_checkpoint


def _checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    """Two detectors of one architecture, the second with other weights and BatchNorm statistics."""
    first = random_detector(64)
    second = random_detector(64)
    with torch.no_grad():
        for tensor in second.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor))
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(a, {"model": first.state_dict(), "metadata": first.metadata, "optimizer": {"step": 3}})
    save_checkpoint(b, {"model": second.state_dict(), "metadata": second.metadata})
    return a, b


def test_average_is_the_weighted_mean_of_the_float_tensors(tmp_path: Path) -> None:
    a, b = _checkpoints(tmp_path)
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    out = tmp_path / "soup.pt"
    result = CliRunner().invoke(app, ["models", "average", str(a), str(b), "-o", str(out), "-w", "1", "-w", "3"])
    assert result.exit_code == 0, result.output
    soup = load_checkpoint(out)
    for name, tensor in soup["model"].items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, 0.25 * sa[name].float() + 0.75 * sb[name].float(), atol=1e-6), name
        else:
            assert torch.equal(tensor, sa[name])  # BatchNorm batch counters: the first file's
    assert soup["metadata"]["weight_average"] == {"checkpoints": [str(a), str(b)], "weights": [0.25, 0.75]}
    assert "optimizer" not in soup  # no training state
    model = load_model_from_checkpoint(out).eval()
    assert model(torch.rand(1, 3, 64, 64))[0]["boxes"].shape[-1] == 4


def test_average_refuses_other_architectures_and_bad_weights(tmp_path: Path) -> None:
    a, _ = _checkpoints(tmp_path)
    wide = tmp_path / "wide.pt"
    model = random_detector(64)
    state = model.state_dict()
    state["heads.8.coverage.weight"] = torch.zeros(2, *state["heads.8.coverage.weight"].shape[1:])
    save_checkpoint(wide, {"model": state, "metadata": model.metadata})
    with pytest.raises(GesturekitError, match=r"wide\.pt: tensor 'heads\.8\.coverage\.weight' has shape"):
        average_checkpoints([a, wide])
    fewer = tmp_path / "fewer.pt"
    save_checkpoint(fewer, {"model": {k: v for k, v in state.items() if not k.startswith("heads.")},
                            "metadata": model.metadata})
    with pytest.raises(GesturekitError, match=r"fewer\.pt: tensor 'heads\..*' is in only one"):
        average_checkpoints([a, fewer])
    with pytest.raises(GesturekitError, match="two or more"):
        average_checkpoints([a])
    with pytest.raises(GesturekitError, match="one positive weight per checkpoint"):
        average_checkpoints([a, a], [1.0])


def test_packaged_average_names_its_checkpoints_in_the_model_card(tmp_path: Path) -> None:
    from gesturekit.evaluation.cards import build_card, card_markdown

    a, b = _checkpoints(tmp_path)
    soup, entry = tmp_path / "soup.pt", tmp_path / "zoo" / "my-detector"
    save_checkpoint(soup, average_checkpoints([a, b]))
    result = CliRunner().invoke(app, ["models", "package", str(soup), "-o", str(entry)])
    assert result.exit_code == 0, result.output
    assert f"| Weights | average of `{a}` (0.5), `{b}` (0.5) |" in card_markdown(build_card(entry))
