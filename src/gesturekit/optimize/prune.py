"""Structured channel pruning (TAO ``prune``), built on torch-pruning's dependency graph.

Channels are physically removed: a pruned convolution is a smaller convolution. Layers coupled
by a residual add, a depthwise convolution or a top-down merge form one *group* that must keep
the same channels; torch-pruning's ``DependencyGraph`` finds these groups.

For each group every layer that produces its channels scores them, normalised by the layer's
largest score (TAO's normalisation): ``l2`` is the L2 norm of the channel's weights, ``bn_scale``
the BatchNorm ``|gamma|``. The *equalisation* combines the layers' scores into one per channel:
``union`` keeps a channel if any layer keeps it (max), ``intersection`` only if all do (min),
``arithmetic_mean`` and ``geometric_mean`` average them. Channels scoring below the threshold go;
a group keeps at least ``min_channels`` and its kept count is rounded up to a multiple of
``granularity`` (the least important channels go first). The output convolutions of the heads and
the classifier's final linear layer are never pruned, nor the input channels of the first
convolution.

A pruned checkpoint holds no pickled module: its metadata records ``pruned: true`` and
``pruned_channels`` (``{module name: output channels}`` of every layer whose width changed), and
``rebuild_pruned`` re-applies those widths to a freshly created model before ``load_state_dict``.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import nn

import gesturekit
from gesturekit.engine.checkpoint import save_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_json

Equalization = Literal["union", "intersection", "arithmetic_mean", "geometric_mean"]
Criterion = Literal["l2", "bn_scale"]
EQUALIZATIONS: tuple[str, ...] = ("union", "intersection", "arithmetic_mean", "geometric_mean")
CRITERIA: tuple[str, ...] = ("l2", "bn_scale")
REBUILD_INPUT = (1, 3, 64, 64)


@dataclass(frozen=True)
class ChannelSelection:
    """How a threshold picks channels (the module docstring): TAO's ``-eq`` and the importance
    criterion, a floor of ``min_channels`` per group, kept counts rounded up to ``granularity``.

    Raises:
        GesturekitError: an unknown equalization or criterion, or a floor or granularity below 1.
    """

    equalization: Equalization = "union"
    criterion: Criterion = "l2"
    min_channels: int = 8
    granularity: int = 8

    def __post_init__(self) -> None:
        if self.equalization not in EQUALIZATIONS:
            raise GesturekitError(f"equalization: unknown mode {self.equalization!r} "
                                  f"(known: {', '.join(EQUALIZATIONS)})")
        if self.criterion not in CRITERIA:
            raise GesturekitError(f"criterion: unknown criterion {self.criterion!r} (known: {', '.join(CRITERIA)})")
        if self.granularity < 1 or self.min_channels < 1:
            raise GesturekitError("granularity and min_channels must be >= 1")


class _Exported(nn.Module):
    """``model.export_forward`` (or ``model.forward``) as ``forward``, for tracing and op counting."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        return _forward(self.model, images)


def _forward(model: nn.Module, images: torch.Tensor):
    return model.export_forward(images) if hasattr(model, "export_forward") else model(images)


def _width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d / Linear layer, by module name."""
    return {n: _width(m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def output_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose output channels are the model's outputs and must not be pruned.

    The detector's coverage and bbox convolutions, the classifier's final linear layer, else the
    last Conv2d / Linear layer of the model.
    """
    heads = getattr(model, "heads", None)
    if isinstance(heads, nn.ModuleDict):
        return [layer for head in heads.values() for layer in (head.coverage, head.bbox)]
    if isinstance(getattr(model, "classifier", None), nn.Linear):
        return [model.classifier]
    return [[m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]]


def equalize(scores: torch.Tensor, mode: Equalization) -> torch.Tensor:
    """Combine per-layer channel importances into one per channel.

    Args:
        scores: [L, N] normalised importance of N channels in L coupled layers; NaN where a layer
            does not see a channel.
        mode: ``union`` (max), ``intersection`` (min), ``arithmetic_mean`` or ``geometric_mean``.

    Returns:
        [N] combined importance.
    """
    seen = ~torch.isnan(scores)
    if mode == "union":
        return torch.where(seen, scores, -math.inf).amax(0)
    if mode == "intersection":
        return torch.where(seen, scores, math.inf).amin(0)
    if mode == "arithmetic_mean":
        return scores.nanmean(0)
    if mode == "geometric_mean":
        return scores.clamp(min=1e-12).log().nanmean(0).exp()
    raise GesturekitError(f"equalization: unknown mode {mode!r} (known: {', '.join(EQUALIZATIONS)})")


def kept_count(importance: torch.Tensor, threshold: float, min_channels: int, granularity: int) -> int:
    """Channels kept: those with importance >= threshold, at least ``min_channels``, rounded up to a
    multiple of ``granularity`` and at most all of them."""
    n = importance.numel()
    keep = max(int((importance >= threshold).sum()), min(min_channels, n))
    return min(n, math.ceil(keep / granularity) * granularity)


@dataclass
class GroupPlan:
    """What a coupled group keeps.

    Attributes:
        root: the layer whose output channels index the group.
        channels: the group's channel count before pruning.
        keep: indices of the kept channels (sorted).
        layers: the layers whose importance was combined.
    """

    root: str
    channels: int
    keep: list[int]
    layers: list[str]


def _layer_scores(layer: nn.Module, criterion: Criterion) -> torch.Tensor | None:
    """Normalised importance of every output channel of ``layer`` [C], or None if it does not score."""
    if criterion == "l2" and isinstance(layer, (nn.Conv2d, nn.Linear)):
        score = layer.weight.detach().flatten(1).norm(dim=1)
    elif criterion == "bn_scale" and isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.affine:
        score = layer.weight.detach().abs()
    else:
        return None
    return score.float() / score.max().clamp(min=1e-12)


def _group_importance(dg: tp.DependencyGraph, group, criterion: Criterion, mode: Equalization,
                      names: dict[nn.Module, str]) -> tuple[torch.Tensor | None, list[str]]:
    n = len(group[0].idxs)
    rows, scored = [], []
    for item in group:
        layer = item.dep.target.module
        if not dg.is_out_channel_pruning_fn(item.dep.handler) or any(r is None for r in item.root_idxs):
            continue
        score = _layer_scores(layer, criterion)
        if score is None:
            continue
        row = torch.full((n,), math.nan)
        row[torch.as_tensor(item.root_idxs)] = score[torch.as_tensor(item.idxs)]
        rows.append(row)
        scored.append(names[layer])
    if not rows:
        return None, scored
    return equalize(torch.stack(rows), mode), scored


def _build_graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(
            model, example_inputs, forward_fn=_forward, verbose=False)


def plan_pruning(
    model: nn.Module,
    example_inputs: torch.Tensor,
    threshold: float,
    selection: ChannelSelection = ChannelSelection(),
    ignored_layers: list[nn.Module] | None = None,
) -> tuple[tp.DependencyGraph, list[GroupPlan]]:
    """Decide which channels each coupled group keeps; the model is not changed.

    Args:
        model: the model (traced through ``export_forward`` when it has one).
        example_inputs: [B,3,H,W] input for tracing.
        threshold: channels whose combined normalised importance is below it are removed.
        selection: how the coupled layers' importances combine (equalization), the criterion
            (``l2`` weight norm or ``bn_scale`` BatchNorm |gamma|), the floor per group (or all
            channels it has, if fewer) and the granularity of kept counts.
        ignored_layers: layers whose output channels stay; default ``output_layers(model)``.

    Returns:
        The dependency graph and one plan per group that loses channels.
    """
    names = {m: n for n, m in model.named_modules()}
    dg = _build_graph(model, example_inputs)
    ignored = output_layers(model) if ignored_layers is None else list(ignored_layers)
    plans = []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=(nn.Conv2d, nn.Linear)):
        importance, scored = _group_importance(dg, group, selection.criterion, selection.equalization, names)
        if importance is None:
            continue
        keep = kept_count(importance, threshold, selection.min_channels, selection.granularity)
        if keep == importance.numel():
            continue
        kept = sorted(torch.argsort(importance, descending=True, stable=True)[:keep].tolist())
        plans.append(GroupPlan(names[group[0].dep.target.module], importance.numel(), kept, scored))
    return dg, plans


def _prune_root(dg: tp.DependencyGraph, model: nn.Module, name: str, remove: list[int]) -> None:
    """Remove output channels ``remove`` of layer ``name`` and the coupled channels of its group."""
    module = model.get_submodule(name)
    group = dg.get_pruning_group(module, dg.get_pruner_of_module(module).prune_out_channels, remove)
    if not dg.check_pruning_group(group):
        raise GesturekitError(f"pruning would remove every channel of {name}")
    group.prune()


def _apply(model: nn.Module, dg: tp.DependencyGraph, plans: list[GroupPlan]) -> None:
    for plan in plans:
        _prune_root(dg, model, plan.root, sorted(set(range(plan.channels)) - set(plan.keep)))


@dataclass
class ModelStats:
    """Parameter count, multiply-accumulates of one forward, FP32 ONNX size in bytes."""

    params: int
    macs: int
    onnx_bytes: int


@dataclass
class PruneReport:
    """Before/after size of a pruned model; ``layers`` maps a layer to its (before, after) width."""

    settings: dict[str, Any]
    input_shape: list[int]
    before: ModelStats
    after: ModelStats
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def reduction(self) -> dict[str, float]:
        """Percent reduction of params, MACs and ONNX size."""
        return {k: 100.0 * (1.0 - getattr(self.after, k) / max(getattr(self.before, k), 1))
                for k in ("params", "macs", "onnx_bytes")}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = {k: list(v) for k, v in self.layers.items()}
        out["reduction_percent"] = self.reduction()
        return out

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())


def _onnx_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Size of the FP32 ONNX graph of ``export_forward`` (opset 17, constants folded, no metadata)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's deprecation notices
        torch.onnx.export(_Exported(model).eval(), (example,), buffer, opset_version=17,
                          do_constant_folding=True, dynamo=False)
    return len(buffer.getvalue())


def model_stats(model: nn.Module, example_inputs: torch.Tensor) -> ModelStats:
    """Parameter count, MACs (torch-pruning's counter) and FP32 ONNX file size of ``model``."""
    macs, _ = tp.utils.count_ops_and_params(_Exported(model), example_inputs)
    return ModelStats(params=sum(p.numel() for p in model.parameters()), macs=int(macs),
                      onnx_bytes=_onnx_bytes(model, example_inputs))


def prune_model(
    model: nn.Module,
    example_inputs: torch.Tensor,
    threshold: float,
    selection: ChannelSelection = ChannelSelection(),
) -> PruneReport:
    """Prune ``model`` in place (see the module docstring) and report its size before and after.

    ``model.metadata`` gains ``pruned: true`` and ``pruned_channels``.

    Args:
        model: a gesturekit model; left in eval mode.
        example_inputs: [1,3,H,W] input used for tracing, op counting and the ONNX export.
        threshold, selection: see ``plan_pruning``.

    Returns:
        The report (``PruneReport.save`` writes it as JSON).

    Raises:
        GesturekitError: a quantization-aware (QAT) model.
    """
    if (getattr(model, "metadata", None) or {}).get("qat"):
        raise GesturekitError("a quantization-aware (QAT) model cannot be pruned: prune the float model, "
                              "then retrain it with QAT")
    model.eval()
    widths_before = layer_widths(model)
    before = model_stats(model, example_inputs)
    dg, plans = plan_pruning(model, example_inputs, threshold, selection)
    _apply(model, dg, plans)
    widths = layer_widths(model)
    meta = dict(getattr(model, "metadata", {}) or {})
    changed = {n: w for n, w in widths.items() if w != widths_before[n]}
    meta["pruned"] = True
    meta["pruned_channels"] = {**meta.get("pruned_channels", {}), **changed}
    model.metadata = meta
    return PruneReport({"threshold": threshold, **asdict(selection)}, list(example_inputs.shape), before, model_stats(model, example_inputs),
                       {n: (widths_before[n], widths[n]) for n in widths})


def rebuild_pruned(model: nn.Module, pruned_channels: dict[str, int],
                   example_inputs: torch.Tensor | None = None) -> nn.Module:
    """Give a freshly created model the recorded layer widths (in place), ready for ``load_state_dict``.

    Each recorded layer that is wider than recorded loses its trailing channels together with its
    coupled layers (the weights are replaced by the state dict afterwards, so which channels go
    does not matter).

    Args:
        model: a model built like the one that was pruned.
        pruned_channels: ``{module name: output channels}`` from the pruned model's metadata.
        example_inputs: input for tracing; default zeros of shape ``REBUILD_INPUT``.

    Raises:
        GesturekitError: a recorded layer is missing, or the widths cannot be reproduced.
    """
    model.eval()
    modules = dict(model.named_modules())
    unknown = [n for n in pruned_channels if not isinstance(modules.get(n), (nn.Conv2d, nn.Linear))]
    if unknown:
        raise GesturekitError(f"pruned_channels.{unknown[0]}: no such Conv2d/Linear layer in the model")
    dg = _build_graph(model, torch.zeros(REBUILD_INPUT) if example_inputs is None else example_inputs)
    for name, target in pruned_channels.items():
        current = _width(modules[name])
        if target > current:
            raise GesturekitError(f"pruned_channels.{name}: {target} channels, but the layer has only {current}")
        if target < current:
            _prune_root(dg, model, name, list(range(target, current)))
    widths = layer_widths(model)
    wrong = [n for n, w in pruned_channels.items() if widths[n] != w]
    if wrong:
        raise GesturekitError(f"pruned_channels.{wrong[0]}: inconsistent widths ({widths[wrong[0]]} after "
                              f"rebuilding, {pruned_channels[wrong[0]]} recorded)")
    return model


def save_pruned_checkpoint(path: str | Path, model: nn.Module, report: PruneReport | None = None,
                           spec: dict[str, Any] | None = None) -> Path:
    """Write a pruned model as a plain checkpoint: ``model`` (state dict), ``metadata``, ``spec``,
    ``prune_report`` and ``version``."""
    return save_checkpoint(path, {
        "model": model.state_dict(),
        "metadata": dict(model.metadata),
        "spec": spec or {},
        "prune_report": report.to_dict() if report is not None else None,
        "version": gesturekit.__version__,
    })
