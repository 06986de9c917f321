"""TAO's soft-start annealing learning rate, stepped once per iteration.

With progress ``p = iteration / total_iterations``:

- ``p < soft_start``: exponential ramp from ``min_learning_rate`` to ``max_learning_rate``
  (linear in log space);
- ``soft_start <= p < annealing``: hold ``max_learning_rate``;
- ``p >= annealing``: exponential decay back to ``min_learning_rate`` at ``p = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from gesturekit.config.specs import LearningRate


def soft_start_annealing_lr(spec: LearningRate, progress: float) -> float:
    """The learning rate at ``progress`` in [0, 1] (clamped) of the whole run."""
    p = min(max(progress, 0.0), 1.0)
    log_min, log_max = math.log(spec.min_learning_rate), math.log(spec.max_learning_rate)
    if p < spec.soft_start:
        t = p / spec.soft_start
        return math.exp(log_min + (log_max - log_min) * t)
    if p < spec.annealing or spec.annealing >= 1.0:
        return spec.max_learning_rate
    t = (p - spec.annealing) / (1.0 - spec.annealing)
    return math.exp(log_max + (log_min - log_max) * t)


def soft_start_annealing(spec: LearningRate, total_iterations: int) -> Callable[[int], float]:
    """A LambdaLR factor: ``lr(iteration) / max_learning_rate`` (the optimizer's base lr is the max)."""
    total = max(int(total_iterations), 1)
    lr_max = spec.max_learning_rate

    def factor(iteration: int) -> float:
        return soft_start_annealing_lr(spec, iteration / total) / lr_max

    return factor


def build_scheduler(optimizer: Optimizer, spec: LearningRate, total_iterations: int) -> LambdaLR:
    """A per-iteration LambdaLR; the optimizer must be built with ``lr=spec.max_learning_rate``.

    The factor is a plain closure, so ``state_dict()`` holds only counters and stays loadable
    with ``torch.load(weights_only=True)``.
    """
    return LambdaLR(optimizer, soft_start_annealing(spec, total_iterations))
