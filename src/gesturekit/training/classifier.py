"""Train the gesture classifier from a ``ClassifierSpec``: ``gesturekit train classifier -e SPEC -r DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from gesturekit.config.specs import ClassifierSpec
from gesturekit.data.datasets import ClassificationDataset
from gesturekit.data.transforms import classification_eval_transform, classification_train_transform
from gesturekit.engine.distributed import RuntimeContext
from gesturekit.metrics.classification import evaluate_classification
from gesturekit.models.metadata import classifier_metadata
from gesturekit.training import common


def classifier_arch_kwargs(spec: ClassifierSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "num_classes": len(spec.dataset.classes),
        "backbone": spec.model.backbone,
        "dropout": spec.model.dropout,
        "label_smoothing": spec.label_smoothing,
    }
    if spec.model.box_class is not None:
        kwargs["box_class"] = spec.dataset.classes.index(spec.model.box_class)
    return kwargs


def build_classifier(spec: ClassifierSpec, is_main: bool = True) -> nn.Module:
    """The classifier the spec describes, initialised as it says, with its metadata attached."""
    kwargs = classifier_arch_kwargs(spec)
    model = common.init_model(spec.model, kwargs, is_main)
    metadata = classifier_metadata(spec.model.arch, kwargs, spec.dataset.classes, spec.augmentation.input_size,
                                   spec.crop)
    return common.with_metadata(model, metadata)


def classification_validator(spec: ClassifierSpec, dataset: Dataset, ctx: RuntimeContext):
    """A ``fit`` validation callback: accuracy and macro-F1 on the validation split."""
    loader = common.shard_loader(dataset, spec.training.batch_size_per_gpu, spec.training.num_workers, ctx)

    def validate(model: nn.Module, ctx: RuntimeContext) -> dict[str, float]:
        y_true, y_pred = [], []
        for images, labels in loader:
            y_pred += [p["label"] for p in model(images.to(ctx.device))]
            y_true += labels.tolist()
        y_true = common.all_gather_lists(y_true, ctx.distributed)
        y_pred = common.all_gather_lists(y_pred, ctx.distributed)
        result = evaluate_classification(y_true, y_pred, spec.dataset.classes)
        return {"macro_f1": result["macro_f1"], "accuracy": result["accuracy"]}

    return validate


def train_classifier(spec: ClassifierSpec, results_dir: Path, device: str | None = None) -> dict[str, Any]:
    """Train (or resume) the classifier; returns the training summary."""
    return common.train_task(
        spec, results_dir, device, ClassificationDataset,
        classification_train_transform(spec.augmentation, spec.crop, with_box=spec.model.box_class is not None),
        classification_eval_transform(spec.augmentation.input_size, spec.crop), None,
        build_classifier, classification_validator, "macro_f1",
    )
