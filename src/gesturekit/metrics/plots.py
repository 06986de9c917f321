"""Metric plots rendered off-screen (matplotlib Agg, no pyplot state) and written atomically."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_bytes


def _save(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` in the format named by the suffix of ``path`` (PNG if none) and write it atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight")
    except ValueError as exc:
        raise GesturekitError(f"{path}: cannot write a plot in format {fmt!r}: {exc}") from None
    return atomic_write_bytes(path, buf.getvalue())


def save_pr_curve(result_or_curves: Mapping[str, Any], path: str | Path, title: str = "Precision-recall") -> Path:
    """Plot one precision/recall curve per class, with its AP in the legend.

    Args:
        result_or_curves: the dict of :func:`~gesturekit.metrics.detection.evaluate_detection`, or its
            ``curves`` mapping: class name -> ``{"recall": [P], "precision": [P], "ap": float}``.
        path: output image; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).

    Returns:
        The written path.
    """
    curves = result_or_curves.get("curves", result_or_curves)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(curve["recall"], curve["precision"], linewidth=1.5, label=f"{name} (AP {curve['ap']:.3f})")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def save_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Path:
    """Plot a confusion matrix (rows = true class, columns = predicted) with the counts annotated.

    Args:
        cm: [K, K] counts.
        classes: the K class names.
        path: output image; the suffix picks the format.
        normalize: colour each cell by its share of the row (recall per class) and print the share
            under the count; otherwise colour by the raw count.

    Returns:
        The written path.
    """
    counts = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    if counts.shape != (k, k):
        raise GesturekitError(f"cm: expected shape [{k}, {k}] for {k} classes, got {list(counts.shape)}")
    rows = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0) if normalize else counts
    vmax = 1.0 if normalize else max(int(counts.max(initial=0)), 1)

    side = max(4.0, 0.6 * k + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xlabel="Predicted",
        ylabel="True",
        title=title + (" (row-normalised)" if normalize else ""),
    )
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    for i in range(k):
        for j in range(k):
            text = f"{counts[i, j]}\n{values[i, j]:.0%}" if normalize else f"{counts[i, j]}"
            colour = "white" if values[i, j] > 0.5 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    return _save(fig, path)
