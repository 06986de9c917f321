"""Rebuild a saved gesturekit model (plain, pruned or quantization-aware) and load its weights.

A checkpoint holds no pickled module: its ``metadata`` names the architecture and its keyword
arguments; a pruned model also records its layer widths (``pruned_channels``, re-applied by
``prune.rebuild_pruned``) and a QAT model its fake-quantization target (``qat.prepare_qat``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.models import create_model
from gesturekit.models.metadata import check_metadata
from gesturekit.optimize.prune import rebuild_pruned


def model_from_state(state: dict[str, Any], source: str, arch_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Build the model of a loaded gesturekit checkpoint (plain, pruned, QAT) and load its weights.

    The widths of a pruned model (``metadata.pruned_channels``) are applied, and a QAT model's
    fake quantization prepared (``metadata.qat_target``), before the weights are loaded. Eval
    mode, CPU. ``arch_kwargs`` (e.g. a retraining spec's) replace the recorded ones; the recorded
    widths still apply.

    Raises:
        GesturekitError: naming ``source``: no model metadata, or weights that do not match.
    """
    meta = check_metadata(state.get("metadata"), source)
    if not isinstance(state.get("model"), dict):
        raise GesturekitError(f"{source}: checkpoint has no 'model' state_dict")
    kwargs = {**(meta["arch_kwargs"] if arch_kwargs is None else arch_kwargs), "pretrained": False}
    if meta["task"] == "detection":
        kwargs.setdefault("postprocessing", meta["postprocessing"])
    model = create_model(meta["arch"], **kwargs)
    if meta.get("pruned"):
        rebuild_pruned(model, dict(meta.get("pruned_channels") or {}))
    if meta.get("qat"):
        from gesturekit.optimize.qat import prepare_qat

        prepare_qat(model, meta.get("qat_target", "tensorrt"))  # checkpoints before qat_target were symmetric
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise GesturekitError(f"{source}: weights do not fit the architecture: {first}") from None
    model.metadata = meta
    return model.eval()


def load_model_from_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild the model of a gesturekit checkpoint file (plain, pruned or QAT; ``weights_only``
    loading) and load its weights: ``model_from_state`` of ``engine.checkpoint.load_checkpoint``.

    Raises:
        GesturekitError: unreadable checkpoint, missing metadata, or weights that do not fit.
    """
    return model_from_state(load_checkpoint(path), str(path))


def load_pruned_checkpoint(path: str | Path, arch_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Load a pruned checkpoint written by ``save_pruned_checkpoint`` (``weights_only`` loading),
    built with ``arch_kwargs`` when given (see ``model_from_state``).

    Raises:
        GesturekitError: the file is not a pruned gesturekit checkpoint or does not match.
    """
    model = model_from_state(load_checkpoint(path), str(path), arch_kwargs)
    if not model.metadata.get("pruned"):
        raise GesturekitError(f"{path}: not a pruned checkpoint (metadata.pruned is not true)")
    return model
