"""Soft-start annealing: exponential ramp, plateau, exponential decay, per iteration."""

from __future__ import annotations

import math

import pytest
import torch

from gesturekit.config.specs import LearningRate
from gesturekit.engine.schedule import build_scheduler, soft_start_annealing, soft_start_annealing_lr

SPEC = LearningRate(min_learning_rate=1e-5, max_learning_rate=1e-3, soft_start=0.1, annealing=0.7)


def test_shape_at_landmarks() -> None:
    lr = lambda p: soft_start_annealing_lr(SPEC, p)  # noqa: E731
    assert lr(0.0) == pytest.approx(1e-5)
    assert lr(0.05) == pytest.approx(1e-4)  # halfway up in log space: geometric mean
    assert lr(0.1) == pytest.approx(1e-3)
    assert lr(0.4) == pytest.approx(1e-3)
    assert lr(0.7) == pytest.approx(1e-3)
    assert lr(0.85) == pytest.approx(1e-4)  # halfway down in log space
    assert lr(1.0) == pytest.approx(1e-5)
    assert lr(1.5) == pytest.approx(1e-5)  # clamped


def test_ramp_increases_and_decay_decreases() -> None:
    values = [soft_start_annealing_lr(SPEC, i / 1000) for i in range(1001)]
    ramp, decay = values[:101], values[700:]
    assert all(a < b for a, b in zip(ramp, ramp[1:], strict=False))
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert max(values) == pytest.approx(1e-3) and min(values) == pytest.approx(1e-5)
    # exponential: constant ratio between equal steps of the ramp
    ratios = [b / a for a, b in zip(ramp, ramp[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))


def test_no_soft_start_and_no_annealing() -> None:
    flat = LearningRate(min_learning_rate=1e-5, max_learning_rate=1e-3, soft_start=0.0, annealing=1.0)
    assert {soft_start_annealing_lr(flat, p) for p in (0.0, 0.5, 1.0)} == {1e-3}


def test_lambdalr_steps_per_iteration() -> None:
    total = 100
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=SPEC.max_learning_rate)
    scheduler = build_scheduler(optimizer, SPEC, total)
    seen = []
    for _ in range(total + 1):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(1e-5)
    assert seen[10] == pytest.approx(1e-3) and seen[70] == pytest.approx(1e-3)
    assert seen[100] == pytest.approx(1e-5)
    assert soft_start_annealing(SPEC, total)(50) == pytest.approx(1.0)
    # the schedule state holds only counters: resumable and weights_only-safe
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [None] and state["last_epoch"] == total + 1
    assert math.isclose(state["base_lrs"][0], 1e-3)
