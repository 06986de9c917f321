"""Train the gesture classifier from a ``ClassifierSpec``: ``gesturekit train classifier -e SPEC -r DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gesturekit.config.specs import source_splits, ClassifierSpec
from gesturekit.data.datasets import ClassificationDataset
from gesturekit.data.transforms import classification_eval_transform, classification_train_transform
from gesturekit.engine.distributed import RuntimeContext, init_runtime, make_loader
from gesturekit.engine.trainer import fit
from gesturekit.metrics.classification import evaluate_classification
from gesturekit.models import create_model
from gesturekit.models.metadata import classifier_metadata
from gesturekit.training import common


def classifier_arch_kwargs(spec: ClassifierSpec) -> dict[str, Any]:
    return {
        "num_classes": len(spec.dataset.classes),
        "backbone": spec.model.backbone,
        "dropout": spec.model.dropout,
        "label_smoothing": spec.label_smoothing,
    }


def build_classifier(spec: ClassifierSpec, is_main: bool = True) -> nn.Module:
    """The classifier the spec describes, initialised as it says, with its metadata attached."""
    kwargs = classifier_arch_kwargs(spec)
    if spec.model.load_graph:
        from gesturekit.optimize.prune import load_pruned_checkpoint

        model = load_pruned_checkpoint(spec.model.pretrained_model_file)
    else:
        use_imagenet = spec.model.pretrained and spec.model.pretrained_model_file is None
        model = create_model(spec.model.arch, pretrained=use_imagenet, **kwargs)
        common.report_backbone(model, is_main)
        common.load_initial_weights(model, spec.model.pretrained_model_file, is_main)
    model.metadata = {
        **getattr(model, "metadata", {}),
        **classifier_metadata(spec.model.arch, kwargs, spec.dataset.classes, spec.augmentation.input_size,
                              spec.crop),
    }
    return common.maybe_prepare_qat(model, spec.training.enable_qat)


def classification_validator(spec: ClassifierSpec, dataset: Dataset, ctx: RuntimeContext):
    """A ``fit`` validation callback: accuracy and macro-F1 on the validation split."""
    shard = torch.utils.data.Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    loader = DataLoader(shard, batch_size=spec.training.batch_size_per_gpu, shuffle=False,
                        num_workers=min(spec.training.num_workers, 4))

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
    ctx = init_runtime(device, seed=spec.training.seed)
    data = spec.dataset
    train_set = common.concat(ClassificationDataset, source_splits(data.train, data.train_split), data.classes,
                              data.class_map, classification_train_transform(spec.augmentation, spec.crop))
    loader = make_loader(train_set, spec.training.batch_size_per_gpu, spec.training.num_workers, True, None, ctx,
                         drop_last=len(train_set) > spec.training.batch_size_per_gpu)
    validate = None
    if data.val:
        val_set = common.concat(ClassificationDataset, source_splits(data.val, data.val_split), data.classes,
                                data.class_map, classification_eval_transform(spec.augmentation.input_size, spec.crop))
        validate = classification_validator(spec, val_set, ctx)
    model = build_classifier(spec, ctx.is_main)
    summary = fit(model, loader, spec.training, results_dir, ctx, validate=validate, metric_key="macro_f1",
                  spec_dict=spec)
    summary["dataset"] = {"train": [f"{p}:{split}" for p, split in source_splits(data.train, data.train_split)],
                          "train_images": len(train_set)}
    if ctx.is_main:
        common.record_training_summary(results_dir, summary)
    return summary
