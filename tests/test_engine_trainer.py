"""fit(): validation/best.pt, SIGKILL + resume, and 2-process DDP on CPU (gloo).

The subprocesses are forked from the test process, so they skip the multi-second torch import.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from gesturekit.config.specs import Training
from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.engine.distributed import RuntimeContext, cleanup, init_runtime, make_loader
from gesturekit.engine.trainer import fit, weight_average
from gesturekit.errors import GesturekitError


class TinyRegressor(nn.Module):
    """Conv-BN-linear regressor of a per-image scalar; follows the engine's model contract."""

    metadata = {"task": "toy", "classes": ["y"], "input_size": [8, 8]}

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 1)

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        y = self.fc(self.bn(self.conv(images)).relu().mean((2, 3))).squeeze(1)
        if self.training:
            return {"mse": (y - torch.stack([t["y"] for t in targets])).square().mean()}
        return [{"scores": v} for v in y]


class ToyDataset(Dataset):
    """``n`` random 3x8x8 images whose target is 3 x their mean; ``sleep`` seconds per item."""

    def __init__(self, n: int = 32, sleep: float = 0.0) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = 3 * self.x.mean((1, 2, 3))
        self.sleep = sleep

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if self.sleep:
            time.sleep(self.sleep)
        return self.x[i], {"y": self.y[i]}


def collate(batch):
    return torch.stack([x for x, _ in batch]), [t for _, t in batch]


def _spec(epochs: int, **kw) -> Training:
    base = {"batch_size_per_gpu": 4, "num_workers": 0, "checkpoint_interval": 1, "validation_interval": 1,
            "precision": "fp32"}
    return Training(epochs=epochs, **{**base, **kw})


def _train(results_dir: Path, epochs: int, samples: int = 32, sleep: float = 0.0,
           params_out: Path | None = None, log: Path | None = None) -> None:
    """The training run the subprocess tests launch (ranks from the torchrun environment variables)."""
    if log is not None:
        sys.stdout = sys.stderr = log.open("w", buffering=1)
    torch.set_num_threads(1)
    ctx = init_runtime("cpu", seed=1234)  # seed + rank: ranks start from different weights
    model = TinyRegressor()
    loader = make_loader(ToyDataset(samples, sleep), 4, 0, True, collate, ctx)
    spec = _spec(epochs, learning_rate={"min_learning_rate": 1e-3, "max_learning_rate": 1e-2})
    fit(model, loader, spec, results_dir, ctx)
    if params_out is not None:
        params = {k: v.detach() for k, v in model.named_parameters()}
        torch.save(params, params_out / f"rank{ctx.rank}.pt")
    cleanup()


# ---------------------------------------------------------------- in-process


def test_fit_keeps_best_and_writes_outputs(tmp_path: Path) -> None:
    scores = iter([0.5, 0.7, 0.6])
    seen_modes = []

    def validate(model: nn.Module, ctx: RuntimeContext) -> dict[str, float]:
        seen_modes.append((model.training, torch.is_grad_enabled()))
        return {"ap50": next(scores), "recall": 1.0}

    ctx = init_runtime("cpu", seed=0)
    loader = make_loader(ToyDataset(16), 4, 0, True, collate, ctx)
    summary = fit(TinyRegressor(), loader, _spec(3, checkpoint_interval=5), tmp_path, ctx, validate=validate)

    assert seen_modes == [(False, False)] * 3
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert (best["epoch"], best["best_metric"]) == (2, 0.7)
    assert (last["epoch"], last["global_step"], last["best_metric"]) == (3, 12, 0.7)
    assert last["metadata"] == TinyRegressor.metadata
    assert last["spec"]["training"]["epochs"] == 3
    assert summary["best_metric"] == 0.7 and summary["best_epoch"] == 2
    assert summary["images_seen"] == 48 and summary["world_size"] == 1
    assert json.loads((tmp_path / "train_summary.json").read_text()) == json.loads(json.dumps(summary))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["val"]["ap50"] for r in records] == [0.5, 0.7, 0.6]
    loss = records[-1]["loss"]
    assert loss["total"] == pytest.approx(loss["mse"] + loss["regularizer"])
    assert (tmp_path / "spec.yaml").is_file() and any((tmp_path / "tensorboard").iterdir())


def _ema_run(results_dir: Path, stop_after: int | None = None) -> nn.Module:
    """4 epochs with a weight average, validated on it; ``stop_after`` epochs: the run dies there."""
    ctx = init_runtime("cpu", seed=0)  # same initial weights every call
    model = TinyRegressor()
    loader = make_loader(ToyDataset(16), 4, 0, False, collate, ctx)
    epochs = iter(range(1, 5))

    def validate(m: nn.Module, c: RuntimeContext) -> dict[str, float]:
        if next(epochs) == stop_after:
            raise KeyboardInterrupt
        return {"ap50": -float(m.fc.weight.abs().sum())}

    fit(model, loader, _spec(4, ema_decay=0.8), results_dir, ctx, validate=validate)
    return model


def test_fit_with_ema_saves_validates_and_resumes_the_average(tmp_path: Path) -> None:
    model = _ema_run(tmp_path / "straight")
    last = load_checkpoint(tmp_path / "straight" / "last.pt")
    average, trained = last["model"], last["trained_model"]
    assert not torch.equal(average["fc.weight"], trained["fc.weight"])
    assert torch.equal(model.state_dict()["fc.weight"], average["fc.weight"])  # fit returns the average
    best = load_checkpoint(tmp_path / "straight" / "best.pt")
    assert best["best_metric"] == -float(best["model"]["fc.weight"].abs().sum())  # validation saw the average

    with pytest.raises(KeyboardInterrupt):
        _ema_run(tmp_path / "resumed", stop_after=3)  # dies before saving epoch 3
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2
    _ema_run(tmp_path / "resumed")  # continues from epoch 2: the weights and their average
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    for key in ("model", "trained_model"):
        for name, tensor in last[key].items():
            torch.testing.assert_close(resumed[key][name], tensor, msg=f"{key}.{name}")


@pytest.mark.parametrize("warmup", [True, False])
def test_weight_average_decay_ramps_up_with_warmup(warmup: bool) -> None:
    model = nn.Linear(1, 1, bias=False)
    average = weight_average(model, 0.9, warmup)
    expected = None
    for n, value in enumerate([1.0, 2.0, 4.0, 8.0, 16.0]):
        model.weight.data.fill_(value)
        average.update_parameters(model)
        decay = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        expected = value if expected is None else decay * expected + (1 - decay) * value  # the first update copies
        assert average.module.weight.item() == pytest.approx(expected)


def test_fit_requires_metric_key(tmp_path: Path) -> None:
    ctx = init_runtime("cpu")
    loader = make_loader(ToyDataset(8), 4, 0, False, collate, ctx)
    with pytest.raises(GesturekitError, match="'ap50'"):
        fit(TinyRegressor(), loader, _spec(1), tmp_path, ctx, validate=lambda m, c: {"top1": 0.5})


def test_fit_rejects_mismatching_checkpoint(tmp_path: Path) -> None:
    ctx = init_runtime("cpu")
    loader = make_loader(ToyDataset(8), 4, 0, False, collate, ctx)
    torch.save({"model": {"w": torch.zeros(1)}, "optimizer": {}, "scheduler": {}, "epoch": 1, "global_step": 2},
               tmp_path / "last.pt")
    with pytest.raises(GesturekitError, match="last.pt: checkpoint does not match"):
        fit(TinyRegressor(), loader, _spec(2), tmp_path, ctx)


# ---------------------------------------------------------------- subprocesses


def _checkpoint_epoch(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["epoch"])
    except GesturekitError:
        return 0


def test_sigkill_then_resume_continues_optimizer_and_schedule(tmp_path: Path, capsys) -> None:
    epochs, samples = 8, 32  # 8 iterations per epoch, ~0.3 s per epoch
    fork = multiprocessing.get_context("fork")
    proc = fork.Process(target=_train, args=(tmp_path, epochs, samples, 0.01), kwargs={"log": tmp_path / "log1"})
    proc.start()
    last = tmp_path / "last.pt"
    deadline = time.monotonic() + 30
    while not (last.exists() and _checkpoint_epoch(last) >= 1):
        assert proc.is_alive(), (tmp_path / "log1").read_text()
        assert time.monotonic() < deadline, "no checkpoint within 30 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    killed_at = _checkpoint_epoch(last)
    assert proc.exitcode == -signal.SIGKILL
    assert 1 <= killed_at < epochs, f"run was not killed mid-training (epoch {killed_at})"
    assert "resuming" not in (tmp_path / "log1").read_text()

    _train(tmp_path, epochs, samples)  # the same run, without the slow-down, to completion
    assert f"resuming from epoch {killed_at} " in capsys.readouterr().out

    state = load_checkpoint(last)
    total = epochs * samples // 4
    assert state["epoch"] == epochs and state["global_step"] == total
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {total}
    assert state["scheduler"]["last_epoch"] == total
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == killed_at and summary["images_seen"] == epochs * samples


def _ddp_worker(rank: int, world_size: int, port: int, results: Path, params: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    _train(results, epochs=3, samples=32, params_out=params)


def test_ddp_two_gloo_ranks_stay_in_sync(tmp_path: Path) -> None:
    results, params = tmp_path / "run", tmp_path / "params"
    params.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(2, port, results, params), nprocs=2, start_method="fork")

    rank0, rank1 = (torch.load(params / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and len(rank0) == 6
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    records = [json.loads(line) for line in (results / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"]["mse"] < records[0]["loss"]["mse"]
    summary = json.loads((results / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8
    assert summary["images_seen"] == 3 * 32 and summary["global_step"] == 3 * 4
