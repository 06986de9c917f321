"""Automatic pruning-threshold search: the most pruning that stays within an accuracy budget.

The unpruned checkpoint is evaluated first (the *baseline*). Then the thresholds are tried in
increasing order (a larger threshold removes more channels): each one prunes a fresh copy of the
checkpoint, retrains it briefly through the ordinary training path (the spec with
``model.load_graph: true``, ``model.pretrained_model_file: <pruned.pt>`` and
``training.epochs: retrain_epochs``, run in ``work_dir/pth_<threshold>``) and evaluates it. The
sweep stops at the first threshold whose drop exceeds the target: retraining does not make a model
that lost more channels better, and each point costs a retraining. The chosen threshold is the
largest one within the target.

Metrics are fractions in [0, 1] (AP@0.5 for a detector, macro-F1 for a classifier, averaged over
the spec's ``evaluation.datasets``); the *drop* is ``100 * (baseline - metric)``, in percentage
points. A run directory that already holds a finished ``last.pt`` is resumed, so an interrupted
search continues where it stopped.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from gesturekit.config.base import validate_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec
from gesturekit.engine.checkpoint import LAST, load_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_bytes, atomic_write_json
from gesturekit.optimize.prune import ChannelSelection, PruneReport, model_stats, prune_model, save_pruned_checkpoint
from gesturekit.optimize.restore import load_model_from_checkpoint, model_from_state

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
PRUNED = "pruned.pt"
CURVE_JSON = "search.json"
CURVE_PNG = "search.png"

Spec = DetectorSpec | ClassifierSpec
EvalFn = Callable[[nn.Module], float]


@dataclass
class SearchPoint:
    """One tried threshold: the pruned size, the metric after retraining and its drop (points).

    ``run_dir`` holds ``pruned.pt`` and the retraining run (``last.pt``).
    """

    threshold: float
    params: int
    macs: int
    metric: float
    drop: float
    within_target: bool
    run_dir: str
    report: PruneReport = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "params": self.params, "macs": self.macs, "metric": self.metric,
                "drop": self.drop, "within_target": self.within_target, "run_dir": self.run_dir,
                "reduction_percent": self.report.reduction()}


@dataclass
class SearchResult:
    """The trade-off curve and the chosen point (None when no threshold stays within the target)."""

    metric_name: str
    target_drop: float
    baseline_metric: float
    baseline_params: int
    baseline_macs: int
    points: list[SearchPoint]
    chosen: SearchPoint | None
    curve_json: Path
    curve_png: Path

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric_name, "target_drop": self.target_drop,
                "baseline": {"metric": self.baseline_metric, "params": self.baseline_params,
                             "macs": self.baseline_macs},
                "points": [p.to_dict() for p in self.points],
                "chosen_threshold": self.chosen.threshold if self.chosen is not None else None}


def metric_name(spec: Spec) -> str:
    """``ap50`` for a detector spec, ``macro_f1`` for a classifier spec."""
    return "ap50" if isinstance(spec, DetectorSpec) else "macro_f1"


def retrain_spec(spec: Spec, pruned: Path, epochs: int) -> Spec:
    """``spec`` set to retrain the pruned checkpoint ``pruned`` for ``epochs`` epochs (float, no QAT)."""
    data = spec.model_dump()
    data["model"].update(load_graph=True, pretrained_model_file=pruned)
    data["training"].update(epochs=epochs, enable_qat=False)
    return validate_spec(data, type(spec), f"retraining spec of {pruned}")


def _train(spec: Spec, results_dir: Path, device: str | None) -> None:
    if isinstance(spec, DetectorSpec):
        from gesturekit.training.detector import train_detector

        train_detector(spec, results_dir, device)
    else:
        from gesturekit.training.classifier import train_classifier

        train_classifier(spec, results_dir, device)


def _check_matches(meta: dict[str, Any], spec: Spec, source: str) -> None:
    task = "detection" if isinstance(spec, DetectorSpec) else "classification"
    expected = {"task": task, "arch": spec.model.arch, "backbone": spec.model.backbone}
    found = {"task": meta["task"], "arch": meta["arch"], "backbone": meta["arch_kwargs"].get("backbone")}
    for key, value in expected.items():
        if found[key] != value:
            raise GesturekitError(f"{source}: {key} {found[key]!r} does not match the spec's {value!r}")


def save_tradeoff_plot(result: SearchResult, path: Path) -> Path:
    """Params vs metric of the tried thresholds, with the baseline, the target line and the choice
    marked; rendered with matplotlib Agg and written atomically (format from the suffix)."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    params = [p.params / 1e6 for p in result.points]
    metrics = [p.metric for p in result.points]
    ax.plot(params, metrics, "o-", color="tab:blue", label="pruned + retrained")
    for point in result.points:
        ax.annotate(f"{point.threshold:g}", (point.params / 1e6, point.metric), textcoords="offset points",
                    xytext=(4, 4), fontsize="small")
    ax.plot([result.baseline_params / 1e6], [result.baseline_metric], "s", color="black", label="unpruned")
    ax.axhline(result.baseline_metric, color="black", linewidth=0.8, linestyle=":")
    target = result.baseline_metric - result.target_drop / 100.0
    ax.axhline(target, color="tab:red", linestyle="--", label=f"target (-{result.target_drop:g} points)")
    if result.chosen is not None:
        ax.plot([result.chosen.params / 1e6], [result.chosen.metric], "*", markersize=14, color="tab:green",
                label=f"chosen (threshold {result.chosen.threshold:g})")
    ax.set(xlabel="Parameters (M)", ylabel=result.metric_name, title="Pruning trade-off")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".").lower() or "png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def search_threshold(
    checkpoint: Path,
    spec: Spec,
    eval_fn: EvalFn,
    target_drop: float,
    *,
    work_dir: Path,
    thresholds: Sequence[float] | None = None,
    retrain_epochs: int = 1,
    selection: ChannelSelection = ChannelSelection(),
    device: str | None = None,
) -> SearchResult:
    """Find the largest pruning threshold whose pruned and retrained model stays within ``target_drop``.

    See the module docstring for the procedure. Writes ``work_dir/search.json`` and
    ``work_dir/search.png`` (the trade-off curve) and, per threshold, ``work_dir/pth_<t>/``.

    Args:
        checkpoint: the trained (unpruned or pruned) checkpoint to start from.
        spec: the spec it was trained with (its data, augmentation and schedule retrain each point).
        eval_fn: model (eval mode, CPU) -> metric in [0, 1]; ``evaluation.spec_metric.spec_metric(spec)`` for the
            usual one.
        target_drop: the largest acceptable drop, in percentage points of the metric.
        thresholds: thresholds in [0, 1] to try; default ``DEFAULT_THRESHOLDS``.
        retrain_epochs: epochs of retraining after each pruning.
        selection: how each threshold picks channels (``optimize.prune.ChannelSelection``).
        device: training device (default: CUDA if available).

    Raises:
        GesturekitError: bad thresholds or target, or a checkpoint that does not match the spec.
    """
    grid = sorted(set(DEFAULT_THRESHOLDS if thresholds is None else thresholds))
    if not grid or not all(0.0 <= t <= 1.0 for t in grid):
        raise GesturekitError(f"thresholds: need values in [0, 1], got {list(thresholds or [])}")
    if target_drop < 0:
        raise GesturekitError(f"target_drop: must be >= 0, got {target_drop}")
    state = load_checkpoint(checkpoint)
    base = model_from_state(state, str(checkpoint))
    _check_matches(base.metadata, spec, str(checkpoint))
    example = torch.zeros(1, 3, base.metadata["input_size"], base.metadata["input_size"])
    stats = model_stats(base, example)
    baseline = float(eval_fn(base))
    points: list[SearchPoint] = []
    for threshold in grid:
        run_dir = Path(work_dir) / f"pth_{threshold:g}"
        model = model_from_state(state, str(checkpoint))
        report = prune_model(model, example, threshold, selection)
        pruned = save_pruned_checkpoint(run_dir / PRUNED, model, report, spec=state.get("spec"))
        _train(retrain_spec(spec, pruned, retrain_epochs), run_dir, device)
        metric = float(eval_fn(load_model_from_checkpoint(run_dir / LAST)))
        drop = 100.0 * (baseline - metric)
        points.append(SearchPoint(threshold, report.after.params, report.after.macs, metric, drop,
                                  drop <= target_drop, str(run_dir), report))
        if drop > target_drop:
            break
    passing = [p for p in points if p.within_target]
    work_dir = Path(work_dir)
    result = SearchResult(metric_name(spec), target_drop, baseline, stats.params, stats.macs, points,
                          passing[-1] if passing else None, work_dir / CURVE_JSON, work_dir / CURVE_PNG)
    atomic_write_json(result.curve_json, result.to_dict())
    save_tradeoff_plot(result, result.curve_png)
    return result


def save_chosen(result: SearchResult, path: Path) -> Path:
    """Write the chosen retrained model as a pruned checkpoint (``load_pruned_checkpoint`` reads it).

    Raises:
        GesturekitError: no threshold stayed within the target.
    """
    if result.chosen is None:
        raise GesturekitError(f"no threshold kept the {result.metric_name} drop within {result.target_drop:g} "
                              f"points (see {result.curve_json})")
    last = Path(result.chosen.run_dir) / LAST
    trained = load_checkpoint(last)
    return save_pruned_checkpoint(path, model_from_state(trained, str(last)), result.chosen.report,
                                  spec=trained.get("spec"))
