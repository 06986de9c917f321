"""Train the hand detector from a ``DetectorSpec``: ``gesturekit train detector -e SPEC -r DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gesturekit.config.specs import source_splits, DetectorSpec
from gesturekit.data.datasets import DetectionDataset, detection_collate
from gesturekit.data.transforms import detection_eval_transform, detection_train_transform
from gesturekit.engine.distributed import RuntimeContext, init_runtime, make_loader
from gesturekit.engine.trainer import fit
from gesturekit.metrics.detection import evaluate_detection
from gesturekit.models import create_model
from gesturekit.models.metadata import detector_metadata, postprocessing_from_spec
from gesturekit.training import common


def detector_arch_kwargs(spec: DetectorSpec) -> dict[str, Any]:
    classes = spec.dataset.classes
    return {
        "num_classes": len(classes),
        "backbone": spec.model.backbone,
        "head_channels": spec.model.head_channels,
        "strides": list(spec.model.strides),
        "class_weights": [spec.class_weights.get(c, 1.0) for c in classes],
        "postprocessing": postprocessing_from_spec(spec.postprocessing),
    }


def build_detector(spec: DetectorSpec, is_main: bool = True) -> nn.Module:
    """The detector the spec describes, initialised as it says, with its metadata attached."""
    kwargs = detector_arch_kwargs(spec)
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
        **detector_metadata(spec.model.arch, kwargs, spec.dataset.classes, spec.augmentation.input_size,
                            kwargs["postprocessing"]),
    }
    return common.maybe_prepare_qat(model, spec.training.enable_qat)


def detection_validator(spec: DetectorSpec, dataset: Dataset, ctx: RuntimeContext):
    """A ``fit`` validation callback: AP on the letterboxed validation split, sharded over ranks."""
    shard = torch.utils.data.Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    loader = DataLoader(shard, batch_size=spec.training.batch_size_per_gpu, shuffle=False,
                        num_workers=min(spec.training.num_workers, 4), collate_fn=detection_collate)

    def validate(model: nn.Module, ctx: RuntimeContext) -> dict[str, float]:
        preds, gts = [], []
        for images, targets in loader:
            for out, target in zip(model(images.to(ctx.device)), targets):
                preds.append({k: v.cpu().numpy() for k, v in out.items()})
                gts.append({"boxes": target["boxes"].numpy(), "labels": target["labels"].numpy()})
        preds = common.all_gather_lists(preds, ctx.distributed)
        gts = common.all_gather_lists(gts, ctx.distributed)
        result = evaluate_detection(preds, gts, spec.dataset.classes,
                                    min_width=spec.evaluation.minimum_width,
                                    min_height=spec.evaluation.minimum_height)
        return {"ap50": result["ap50"], "ap50_95": result["ap50_95"], "kitti_ap": result["kitti_ap"]}

    return validate


def train_detector(spec: DetectorSpec, results_dir: Path, device: str | None = None) -> dict[str, Any]:
    """Train (or resume) the detector; returns the training summary."""
    ctx = init_runtime(device, seed=spec.training.seed)
    data = spec.dataset
    train_set = common.concat(DetectionDataset, source_splits(data.train, data.train_split), data.classes,
                              data.class_map, detection_train_transform(spec.augmentation))
    loader = make_loader(train_set, spec.training.batch_size_per_gpu, spec.training.num_workers, True,
                         detection_collate, ctx, drop_last=len(train_set) > spec.training.batch_size_per_gpu)
    validate = None
    if data.val:
        val_set = common.concat(DetectionDataset, source_splits(data.val, data.val_split), data.classes,
                                data.class_map, detection_eval_transform(spec.augmentation.input_size))
        validate = detection_validator(spec, val_set, ctx)
    model = build_detector(spec, ctx.is_main)
    summary = fit(model, loader, spec.training, results_dir, ctx, validate=validate, metric_key="ap50",
                  spec_dict=spec)
    summary["dataset"] = {"train": [f"{p}:{split}" for p, split in source_splits(data.train, data.train_split)],
                          "train_images": len(train_set)}
    if ctx.is_main:
        common.record_training_summary(results_dir, summary)
    return summary
