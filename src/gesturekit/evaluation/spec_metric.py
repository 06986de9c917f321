"""The metric a spec's ``evaluation`` section names, as one number: what the pruning-threshold search
(``training.search``) compares a retrained candidate with its unpruned model by.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from gesturekit.config.specs import ClassifierSpec, DetectorSpec
from gesturekit.errors import GesturekitError


def spec_metric(spec: DetectorSpec | ClassifierSpec, device: str = "cpu") -> Callable[[nn.Module], float]:
    """The search metric of a spec: mean AP@0.5 (detector) or macro-F1 (classifier) over
    ``evaluation.datasets`` at ``evaluation.split``, run through the PyTorch runtime backend.

    Raises:
        GesturekitError: the spec lists no evaluation datasets.
    """
    if not spec.evaluation.datasets:
        raise GesturekitError("evaluation.datasets: empty; the threshold search needs data to measure the model on")
    from gesturekit.runtime.torch_backend import TorchBackend

    evaluation, class_map = spec.evaluation, spec.dataset.class_map
    if isinstance(spec, DetectorSpec):
        from gesturekit.evaluation.detection import evaluate_detector_on
        from gesturekit.runtime.detector import HandDetector

        def detector_ap50(model: nn.Module) -> float:
            results = evaluate_detector_on(
                HandDetector(TorchBackend(model, device)), evaluation.datasets, evaluation.split, class_map,
                evaluation.minimum_width, evaluation.minimum_height, evaluation.kitti_iou_threshold)
            return sum(r["ap50"] for r in results.values()) / len(results)

        return detector_ap50

    from gesturekit.evaluation.classification import evaluate_classifier_on
    from gesturekit.runtime.classifier import GestureClassifier

    def classifier_macro_f1(model: nn.Module) -> float:
        results = evaluate_classifier_on(GestureClassifier(TorchBackend(model, device)), evaluation.datasets,
                                         evaluation.split, class_map)
        return sum(r["macro_f1"] for r in results.values()) / len(results)

    return classifier_macro_f1
