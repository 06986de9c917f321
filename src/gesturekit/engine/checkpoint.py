"""Training checkpoints: plain dicts written atomically, read back with ``weights_only=True``.

A results directory holds ``last.pt`` (every ``checkpoint_interval`` epochs and at the end),
``best.pt`` (when the validation metric improves) and ``spec.yaml`` (the resolved spec).

Checkpoint keys: ``model``, ``optimizer``, ``scheduler``, ``scaler`` (state_dicts; scaler may be
None), ``epoch`` (completed epochs), ``global_step``, ``best_metric``, ``metric_key``,
``images_seen``, ``train_time_s``, ``spec`` and ``metadata`` (plain dicts), ``version``; with
``training.ema_decay``, ``model`` is the weight average and ``trained_model`` the weights that
training continues from.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write

LAST = "last.pt"
BEST = "best.pt"
SPEC = "spec.yaml"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves the previous file intact."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with ``torch.load(weights_only=True)``.

    Raises:
        GesturekitError: the file is missing, truncated, corrupt or not a checkpoint dict.
    """
    path = Path(path)
    if not path.is_file():
        raise GesturekitError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GesturekitError(f"{path}: not a readable checkpoint (corrupt, or holds objects "
                              "that weights_only loading refuses)") from None
    except OSError as exc:
        raise GesturekitError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    except Exception:  # noqa: BLE001 - a damaged archive fails in many ways (KeyError, struct.error, ...)
        raise GesturekitError(f"{path}: not a readable checkpoint (truncated or corrupt)") from None
    if not isinstance(state, dict):
        raise GesturekitError(f"{path}: not a checkpoint (expected a dict, got {type(state).__name__})")
    return state


def remove_stale_writes(results_dir: str | Path) -> list[Path]:
    """Delete what killed checkpoint writes left in ``results_dir`` (``.last.pt.*.tmp``: a
    model-sized temporary file that was never renamed into place); return the deleted paths.

    Called as a run starts there, when no write of its own can be in progress.
    """
    stale = sorted(Path(results_dir).glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def latest_checkpoint(results_dir: str | Path) -> Path | None:
    """``results_dir/last.pt`` if it exists, else None."""
    path = Path(results_dir) / LAST
    return path if path.is_file() else None
