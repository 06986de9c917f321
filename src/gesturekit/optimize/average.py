"""Weight averaging of fine-tuned checkpoints: a "model soup" (Wortsman et al., 2022; WiSE-FT).

Models fine-tuned from one another, or from one starting point, tend to lie in one basin of the
loss, so the average of their weights is a model of its own that often keeps the strengths of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.errors import GesturekitError

_KEPT = ("spec", "version")


def average_checkpoints(files: Sequence[str | Path], weights: Sequence[float] | None = None) -> dict[str, Any]:
    """A checkpoint whose ``model`` tensors are the weighted average of those of ``files``.

    Floating-point tensors (weights and BatchNorm statistics) are averaged in FP32; integer ones
    (BatchNorm's batch counters), ``metadata``, ``spec`` and ``version`` come from the first file;
    training state (optimizer, epoch) is left out. ``metadata["weight_average"]`` records the files
    and weights.

    Args:
        files: two or more checkpoints of one architecture (``model`` state dicts of equal names and shapes).
        weights: one positive weight per file, normalised to sum 1 (default: equal).

    Raises:
        GesturekitError: fewer than two files, weights that do not fit them, or a file whose tensors differ
            in names or shapes from the first file's (naming the file and the tensor).
    """
    paths = [Path(f) for f in files]
    if len(paths) < 2:
        raise GesturekitError(f"averaging needs two or more checkpoints, got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or min(weights) <= 0:
        raise GesturekitError(f"averaging: give one positive weight per checkpoint ({len(paths)}), got {weights}")
    shares = [w / sum(weights) for w in weights]
    first = load_checkpoint(paths[0])
    reference = first["model"]
    average = {k: v.float() * shares[0] if v.is_floating_point() else v for k, v in reference.items()}
    for path, share in zip(paths[1:], shares[1:]):
        state = load_checkpoint(path)["model"]
        unshared = sorted(set(reference) ^ set(state))
        if unshared:
            raise GesturekitError(f"{path}: tensor {unshared[0]!r} is in only one of it and {paths[0]} "
                                  "(another architecture?)")
        for name, tensor in state.items():
            if tensor.shape != reference[name].shape:
                raise GesturekitError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                      f"{paths[0]} has {tuple(reference[name].shape)}")
            if tensor.is_floating_point():
                average[name] += tensor.float() * share
    metadata = dict(first.get("metadata") or {})
    metadata["weight_average"] = {"checkpoints": [str(p) for p in paths], "weights": [round(s, 6) for s in shares]}
    return {**{k: first[k] for k in _KEPT if k in first}, "model": average, "metadata": metadata}
