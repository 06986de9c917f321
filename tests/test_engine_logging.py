"""MetricLogger (JSONL + TensorBoard, resume truncation) and the main-rank ProgressBar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gesturekit.engine.logging import MetricLogger, ProgressBar


def _epochs(path: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


def test_jsonl_and_tensorboard(tmp_path: Path) -> None:
    with MetricLogger(tmp_path) as logger:
        for epoch in (1, 2):
            logger.log({"epoch": epoch, "lr": 0.1, "loss": {"total": 1.0 / epoch}, "val": {"ap50": 0.5}})
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[1] == {"epoch": 2, "lr": 0.1, "loss": {"total": 0.5}, "val": {"ap50": 0.5}}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"lr", "loss/total", "val/ap50"}
    assert [(e.step, e.value) for e in events.Scalars("loss/total")] == [(1, 1.0), (2, 0.5)]


def test_resume_drops_records_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3)) + '{"epoch": 4, "lo')
    logger = MetricLogger(tmp_path, resume_epoch=2, tensorboard=False)
    logger.log({"epoch": 3, "resumed": True})
    assert _epochs(path) == [1, 2, 3]
    assert json.loads(path.read_text().splitlines()[-1]) == {"epoch": 3, "resumed": True}


def test_disabled_logger_writes_nothing(tmp_path: Path) -> None:
    MetricLogger(tmp_path / "run", enabled=False).log({"epoch": 1})
    assert not (tmp_path / "run").exists()


def test_progress_prints_on_main_rank_only(capsys: pytest.CaptureFixture[str]) -> None:
    for enabled in (True, False):
        with ProgressBar(enabled=enabled) as progress:
            progress.start("epoch 1/1", total=2)
            progress.update(0.5, 1e-3, 10.0)
            progress.print(f"resuming from epoch [3] main={enabled}")
    out = capsys.readouterr().out
    assert out == "resuming from epoch [3] main=True\n"
