"""train_one_epoch: loss dict summing, regulariser, non-finite losses, scheduling, throughput."""

from __future__ import annotations

import collections
import warnings

import pytest
import torch
from torch import nn

from gesturekit.config.specs import LearningRate, Regularizer
from gesturekit.engine import loop
from gesturekit.engine.distributed import RuntimeContext
from gesturekit.engine.loop import (
    autocast_dtype,
    regularization_loss,
    regularized_weights,
    to_device,
    train_one_epoch,
)
from gesturekit.engine.schedule import build_scheduler
from gesturekit.errors import GesturekitError

CTX = RuntimeContext()
OFF = Regularizer(type="none")


class ListModel(nn.Module):
    """Takes a list of [3,H,W] images and dict targets; two loss terms."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 1)
        self.scale = 1.0

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = torch.stack(images)
        y = self.fc(self.bn(self.conv(x)).mean((2, 3))).squeeze(1) * self.scale
        t = torch.stack([d["y"] for d in targets])
        return {"mse": (y - t).square().mean(), "l1": (y - t).abs().mean() * 0.1}


def _loader(n: int = 24, batch: int = 4) -> list:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 4, 4, generator=g)
    y = 2 * x.mean((1, 2, 3))
    return [([x[i] for i in range(s, s + batch)], [{"y": y[i]} for i in range(s, s + batch)])
            for s in range(0, n, batch)]


def _setup(model: nn.Module, total: int):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    spec = LearningRate(min_learning_rate=0.01, max_learning_rate=0.1, soft_start=0.0, annealing=1.0)
    return optimizer, build_scheduler(optimizer, spec, total)


def test_epoch_trains_and_reports() -> None:
    torch.manual_seed(0)
    model, loader = ListModel(), _loader()
    optimizer, scheduler = _setup(model, 6 * len(loader))
    first = train_one_epoch(model, loader, optimizer, scheduler, None, CTX, 0, "fp32", OFF)
    for epoch in range(1, 6):
        stats = train_one_epoch(model, loader, optimizer, scheduler, None, CTX, epoch, "fp32", OFF)
    assert stats["loss"]["total"] < first["loss"]["total"]
    assert stats["loss"]["total"] == pytest.approx(stats["loss"]["mse"] + stats["loss"]["l1"])
    assert stats["iterations"] == 6 and stats["images"] == 24
    assert stats["images_per_s"] > 0 and stats["data_time_s"] >= 0 and stats["compute_time_s"] > 0
    assert scheduler.last_epoch == 36


def test_max_iterations_limits_the_epoch() -> None:
    model, loader = ListModel(), _loader()
    optimizer, scheduler = _setup(model, 100)
    stats = train_one_epoch(model, loader, optimizer, scheduler, None, CTX, 0, "fp32", OFF, max_iterations=2)
    assert stats["iterations"] == 2 and stats["images"] == 8 and scheduler.last_epoch == 2


def test_non_finite_loss_raises_before_the_step() -> None:
    model, loader = ListModel(), _loader()
    model.scale = float("nan")
    optimizer, scheduler = _setup(model, 10)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(GesturekitError, match=r"epoch 3 iteration 1: non-finite loss \(mse=nan"):
        train_one_epoch(model, loader, optimizer, scheduler, None, CTX, 2, "fp32", OFF)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_regulariser_covers_conv_and_linear_weights_only() -> None:
    model = ListModel()
    weights = regularized_weights(model)
    assert [w.shape for w in weights] == [model.conv.weight.shape, model.fc.weight.shape]
    l2 = regularization_loss(weights, Regularizer(type="l2", weight=0.5))
    l1 = regularization_loss(weights, Regularizer(type="l1", weight=0.5))
    expected_l2 = 0.5 * (model.conv.weight.square().sum() + model.fc.weight.square().sum())
    expected_l1 = 0.5 * (model.conv.weight.abs().sum() + model.fc.weight.abs().sum())
    torch.testing.assert_close(l2, expected_l2)
    torch.testing.assert_close(l1, expected_l1)
    l2.backward()
    torch.testing.assert_close(model.conv.weight.grad, model.conv.weight.detach())  # d(0.5 w^2)/dw = w
    assert model.bn.weight.grad is None and model.conv.bias.grad is None
    assert regularization_loss(weights, Regularizer(type="none")) is None
    assert regularization_loss(weights, Regularizer(type="l2", weight=0.0)) is None


def test_regulariser_is_added_to_the_loss() -> None:
    model, loader = ListModel(), _loader()
    optimizer, scheduler = _setup(model, 10)
    reg = Regularizer(type="l2", weight=1.0)
    stats = train_one_epoch(model, loader, optimizer, scheduler, None, CTX, 0, "fp32", reg, max_iterations=1)
    assert stats["loss"]["regularizer"] > 0
    assert stats["loss"]["total"] == pytest.approx(sum(v for k, v in stats["loss"].items() if k != "total"))


def test_cpu_precision_falls_back_to_fp32_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "_warned_cpu_fp16", False)
    cpu = torch.device("cpu")
    with pytest.warns(UserWarning, match="fp16 needs CUDA"):
        assert autocast_dtype("fp16", cpu) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autocast_dtype("fp16", cpu) is None
        assert autocast_dtype("bf16", cpu) is None
        assert autocast_dtype("fp32", cpu) is None


def test_to_device_moves_nested_batches() -> None:
    pair = collections.namedtuple("pair", "image size")
    batch = ([torch.zeros(2)], {"boxes": torch.ones(1, 4), "meta": "x"}, (torch.ones(1), 3), pair(torch.ones(1), 4))
    moved = to_device(batch, torch.device("meta"))
    assert moved[0][0].device.type == "meta" and moved[1]["boxes"].device.type == "meta"
    assert moved[1]["meta"] == "x" and isinstance(moved[2], tuple) and moved[2][1] == 3
    assert isinstance(moved[3], pair) and moved[3].image.device.type == "meta" and moved[3].size == 4
