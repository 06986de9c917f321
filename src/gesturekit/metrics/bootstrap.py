"""The paired bootstrap: whether two models' scores on one test set differ by more than that set's sampling noise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def paired_bootstrap(num_items: int, score_a: Callable[[np.ndarray], float], score_b: Callable[[np.ndarray], float],
                     resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Score both models on the same resamples (with replacement) of the ``num_items`` test items.

    Pairing the resamples makes the interval measure the gap itself: the noise of a small test set, not the
    sum of two independent noises. ``score_*(picks)`` scores a model on the items ``picks`` (repeats count).

    Returns:
        ``a``, ``b`` (on every item), ``difference`` (a - b), ``interval`` (2.5th and 97.5th percentiles of the
        resampled differences), ``within_noise`` (the interval holds 0), ``num_items`` and ``resamples``.
    """
    everything = np.arange(num_items)
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples):
        picks = rng.integers(0, num_items, num_items)
        differences.append(score_a(picks) - score_b(picks))
    low, high = (float(v) for v in np.percentile(differences, [2.5, 97.5])) if differences else (0.0, 0.0)
    a, b = score_a(everything), score_b(everything)
    return {"a": a, "b": b, "difference": a - b, "interval": [low, high], "within_noise": low <= 0.0 <= high,
            "num_items": num_items, "resamples": resamples}
