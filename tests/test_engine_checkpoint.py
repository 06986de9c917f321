"""Checkpoints: weights_only round trip, atomic replacement, one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gesturekit.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gesturekit.errors import GesturekitError


def _state(epoch: int) -> dict:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": None, "epoch": epoch,
            "best_metric": 0.5, "spec": {"training": {"epochs": 3}}, "metadata": {"classes": ["hand"]},
            "version": "0.1.0"}


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle")


def test_round_trip(tmp_path: Path) -> None:
    state = _state(2)
    save_checkpoint(tmp_path / "sub" / "last.pt", state)
    loaded = load_checkpoint(tmp_path / "sub" / "last.pt")
    assert loaded["epoch"] == 2 and loaded["spec"] == state["spec"] and loaded["scaler"] is None
    torch.testing.assert_close(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["optimizer"]["state"][0]["step"] == 1


def test_failed_write_leaves_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1))
    before = path.read_bytes()
    unpicklable = {**_state(2), "hook": _Unpicklable()}  # torch.save fails part-way through
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, unpicklable)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind


def test_disk_full_mid_write_leaves_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1))
    before = path.read_bytes()

    def half_then_fail(obj: object, f) -> None:
        f.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, _state(2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("content", [b"", b"not a zip archive", "truncated"])
def test_corrupt_file_is_a_one_line_error(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "last.pt"
    if content == "truncated":
        save_checkpoint(path, _state(1))
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(GesturekitError, match=r"last\.pt: not a readable checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_unsafe_objects_and_non_dicts_are_rejected(tmp_path: Path) -> None:
    torch.save({"model": nn.Linear(1, 1)}, tmp_path / "module.pt")  # a pickled module, not a state_dict
    with pytest.raises(GesturekitError, match="module.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "module.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(GesturekitError, match="list.pt: not a checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(GesturekitError, match="missing.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_latest_checkpoint(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "absent") is None
    save_checkpoint(tmp_path / "best.pt", _state(1))
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path / "last.pt", _state(1))
    assert latest_checkpoint(tmp_path) == tmp_path / "last.pt"
