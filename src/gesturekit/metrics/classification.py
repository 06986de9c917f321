"""Classification metrics: per-class precision/recall/F1, macro averages, accuracy, confusion matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gesturekit.errors import GesturekitError
from gesturekit.metrics.bootstrap import paired_bootstrap


def _labels(values: Sequence[int] | np.ndarray, name: str, num_classes: int) -> np.ndarray:
    labels = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = labels[(labels != np.round(labels)) | (labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise GesturekitError(f"{name}: label {bad[0]:g} is not a class index in 0..{num_classes - 1}")
    return labels.astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] int64 counts, rows = true class, columns = predicted class."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def evaluate_classification(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Per-class and macro precision, recall and F1, accuracy and the confusion matrix.

    A ratio with a zero denominator is 0 (sklearn's ``zero_division=0``). Macro averages are taken
    over the classes that occur, in the ground truth or the predictions (support > 0 or predicted
    > 0), so a class absent from an evaluation set neither drags the average to 0 nor inflates it;
    a class that is only predicted counts with F1 0.

    Args:
        y_true: [N] true class indices.
        y_pred: [N] predicted class indices.
        classes: class names, indexed by the labels.

    Returns:
        A JSON-serialisable dict: ``num_samples``, ``accuracy``, ``macro_precision``, ``macro_recall``,
        ``macro_f1``, ``per_class`` (name -> ``precision``, ``recall``, ``f1``, ``support``,
        ``predicted``), ``classes`` and ``confusion_matrix`` (nested lists, rows = true class).
    """
    if not classes:
        raise GesturekitError("classes: at least one class name is required")
    k = len(classes)
    true = _labels(y_true, "y_true", k)
    pred = _labels(y_pred, "y_pred", k)
    if len(true) != len(pred):
        raise GesturekitError(f"y_pred: {len(pred)} predictions for {len(true)} true labels")
    cm = confusion_matrix(true, pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = (support > 0) | (predicted > 0)

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    return {
        "num_samples": int(len(true)),
        "accuracy": float(tp.sum() / len(true)) if len(true) else 0.0,
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, name in enumerate(classes)
        },
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
    }


def paired_bootstrap_macro_f1(y_true: Sequence[int] | np.ndarray, pred_a: Sequence[int] | np.ndarray,
                              pred_b: Sequence[int] | np.ndarray, classes: Sequence[str], resamples: int = 1000,
                              seed: int = 0) -> dict[str, Any]:
    """Two classifiers' macro-F1 on the same samples, against the noise of the sample: a paired bootstrap over
    samples (``metrics.bootstrap``; ``a``, ``b``, ``difference``, ``interval``, ``within_noise``)."""
    true = np.asarray(y_true)

    def macro_f1(pred: np.ndarray) -> Callable[[np.ndarray], float]:
        return lambda picks: evaluate_classification(true[picks], pred[picks], classes)["macro_f1"]

    return paired_bootstrap(len(true), macro_f1(np.asarray(pred_a)), macro_f1(np.asarray(pred_b)), resamples, seed)
