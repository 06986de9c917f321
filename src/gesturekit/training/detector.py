"""Train the hand detector from a ``DetectorSpec``: ``gesturekit train detector -e SPEC -r DIR``."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from gesturekit.config.specs import DetectorSpec
from gesturekit.data.datasets import DetectionDataset, detection_collate
from gesturekit.data.mosaic import MosaicDataset
from gesturekit.data.transforms import detection_eval_transform, detection_train_transform
from gesturekit.engine.distributed import RuntimeContext
from gesturekit.errors import GesturekitError
from gesturekit.metrics.detection import evaluate_detection
from gesturekit.models.detector import DetectNetV2
from gesturekit.models.metadata import detector_metadata, postprocessing_from_spec
from gesturekit.training import common


def detector_arch_kwargs(spec: DetectorSpec) -> dict[str, Any]:
    classes = spec.dataset.classes
    return {
        "num_classes": len(classes),
        "backbone": spec.model.backbone,
        "head_channels": spec.model.head_channels,
        "strides": list(spec.model.strides),
        "context_stride": spec.model.context_stride,
        "positive_radius": spec.model.positive_radius,
        "positives_inside_box": spec.model.positives_inside_box,
        "coverage_loss": spec.model.coverage_loss,
        "class_weights": [spec.class_weights.get(c, 1.0) for c in classes],
        "postprocessing": postprocessing_from_spec(spec.postprocessing),
    }


def build_detector(spec: DetectorSpec, is_main: bool = True) -> nn.Module:
    """The detector the spec describes, initialised as it says, with its metadata attached and,
    with a ``distillation`` section, its teacher set."""
    kwargs = detector_arch_kwargs(spec)
    model = common.init_model(spec.model, kwargs, is_main)
    metadata = detector_metadata(spec.model.arch, kwargs, spec.dataset.classes, spec.augmentation.input_size,
                                 kwargs["postprocessing"])
    if spec.distillation is not None:
        set_teacher(model, spec.distillation.teacher_model_file, spec.distillation.weight)
    return common.with_metadata(model, metadata)


def set_teacher(model: nn.Module, teacher_file: Path, weight: float) -> None:
    """Load a trained detector checkpoint (plain, pruned or QAT) as ``model``'s distillation teacher."""
    from gesturekit.optimize.restore import load_model_from_checkpoint  # pruned and QAT models too (as init_model)

    teacher = load_model_from_checkpoint(teacher_file)
    if not isinstance(teacher, DetectNetV2) or not isinstance(model, DetectNetV2):
        raise GesturekitError(f"distillation.teacher_model_file: {teacher_file}: distillation needs two "
                              f"detectnet_v2 models, got {type(teacher).__name__} -> {type(model).__name__}")
    try:
        model.set_teacher(teacher, weight)
    except ValueError as err:
        raise GesturekitError(f"distillation.teacher_model_file: {teacher_file}: {err}") from None


def detection_validator(spec: DetectorSpec, dataset: Dataset, ctx: RuntimeContext):
    """A ``fit`` validation callback: AP on the validation split, each frame letterboxed as the runtime does
    (``detection_eval_transform``), sharded over ranks."""
    loader = common.shard_loader(dataset, spec.training.batch_size_per_gpu, spec.training.num_workers, ctx,
                                 detection_collate)

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
    aug = spec.augmentation
    combine = partial(MosaicDataset, probability=aug.mosaic, size=aug.input_size) if aug.mosaic > 0 else None
    return common.train_task(
        spec, results_dir, device, DetectionDataset, detection_train_transform(aug, spec.dataset.classes),
        detection_eval_transform(aug.input_size), detection_collate,
        build_detector, detection_validator, "ap50", combine,
    )
