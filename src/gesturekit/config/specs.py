"""Pydantic models of the training/evaluation specs (the open counterpart of TAO's spec files).

A detector spec and a classifier spec share the ``training`` section; each has its own
``dataset``, ``augmentation``, ``model``, ``postprocessing`` and ``evaluation`` sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from gesturekit.config.base import StrictModel


def _must_exist(path: Path, info: ValidationInfo) -> Path:
    """A path that must exist, unless the spec is read by a command that does not open it
    (``load_spec(..., check_files=False)``: a zoo model's spec names training inputs a checkout lacks)."""
    if (info.context or {}).get("check_files", True) and not Path(path).exists():
        raise ValueError(f"file not found: {path}")
    return Path(path)


ExistingPath = Annotated[Path, AfterValidator(_must_exist)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]

Precision = Literal["fp32", "fp16", "bf16"]
Backbone = Literal["mobilenet_v2", "efficientnet_lite0", "resnet18", "resnet34"]
CoverageLoss = Literal["focal", "quality_focal"]
Clustering = Literal["nms", "dbscan"]


class LearningRate(StrictModel):
    """TAO's soft-start annealing schedule: ramp from min to max, hold, anneal back to min."""

    min_learning_rate: PositiveFloat = 5e-6
    max_learning_rate: PositiveFloat = 1e-3
    soft_start: Fraction = 0.1
    annealing: Fraction = 0.7

    @model_validator(mode="after")
    def _ordered(self) -> "LearningRate":
        if self.annealing < self.soft_start:
            raise ValueError("annealing must be >= soft_start")
        if self.min_learning_rate > self.max_learning_rate:
            raise ValueError("min_learning_rate must be <= max_learning_rate")
        return self


class Regularizer(StrictModel):
    type: Literal["none", "l1", "l2"] = "l2"
    weight: Annotated[float, Field(ge=0)] = 4e-5


class Training(StrictModel):
    epochs: PositiveInt = 80
    batch_size_per_gpu: PositiveInt = 32
    num_workers: Annotated[int, Field(ge=0)] = 4
    learning_rate: LearningRate = LearningRate()
    regularizer: Regularizer = Regularizer()
    optimizer: Literal["adamw", "sgd"] = "adamw"
    precision: Precision = "bf16"
    checkpoint_interval: PositiveInt = 5
    validation_interval: PositiveInt = 5
    seed: int = 42
    enable_qat: bool = False
    qat_target: Literal["onnxruntime", "tensorrt"] = "onnxruntime"  # INT8 grid QAT trains for
    max_iterations_per_epoch: Annotated[int | None, Field(gt=0)] = None
    ema_decay: Annotated[float | None, Field(gt=0, lt=1)] = None
    """Keep an exponential moving average of the weights, updated every iteration with this decay
    (timm's ModelEma; e.g. 0.998): validation, ``best.pt`` and ``last.pt``'s ``model`` use it.
    ``None``: the trained weights."""
    ema_warmup: bool = True
    """Ramp the average's decay up, as timm's ModelEma warm-up: update ``n`` uses
    ``min(ema_decay, (1 + n) / (10 + n))``, so the first weights do not weigh on a short run's average."""


class ColorJitter(StrictModel):
    brightness: Fraction = 0.3
    contrast: Fraction = 0.3
    saturation: Fraction = 0.3
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.02


class DataSource(StrictModel):
    """A dataset with its own split name, e.g. ``{path: hagrid.gkpack, split: val}``."""

    path: ExistingPath
    split: str


Sources = list[ExistingPath | DataSource]


def source_splits(sources: Sources, default_split: str) -> list[tuple[Path, str]]:
    """``(path, split)`` of every source; a bare path uses the section's default split."""
    return [(s.path, s.split) if isinstance(s, DataSource) else (s, default_split) for s in sources]


# ---------------------------------------------------------------- detector


class DetectionDataset(StrictModel):
    """Training and validation data: KITTI directories (with ``splits/``) or ``.gkpack`` files.

    A source listed twice is sampled twice as often.
    """

    train: Sources = Field(min_length=1)
    val: Sources = Field(default_factory=list)
    train_split: str = "train"
    val_split: str = "val"
    classes: list[str] = Field(default_factory=lambda: ["hand"], min_length=1)
    class_map: dict[str, str] = Field(default_factory=dict)


class HandPaste(StrictModel):
    """Copy-paste augmentation: hand crops pasted onto training frames as extra labelled boxes.

    Teaches the detector hands that the frames lack (other gestures, small idle hands) from a
    cheap source: tight hand crops, as class folders or a classification pack.
    """

    sources: Sources = Field(default_factory=list)
    split: str = "train"
    label: str = "hand"
    probability: Fraction = 0.5
    max_hands: PositiveInt = 2
    height_range: tuple[PositiveFloat, PositiveFloat] = (0.05, 0.25)
    feather: Annotated[float, Field(ge=0, le=0.5)] = 0.15

    @model_validator(mode="after")
    def _ordered(self) -> "HandPaste":
        if self.height_range[0] > self.height_range[1]:
            raise ValueError("height_range must be (low, high) with low <= high")
        return self


class DetectionAugmentation(StrictModel):
    input_size: PositiveInt = 384
    hflip_probability: Fraction = 0.5
    scale_range: tuple[PositiveFloat, PositiveFloat] = (0.5, 1.5)
    translate: Fraction = 0.2
    min_visible: Fraction = 0.4
    """A box that augmentation pushes partly off the canvas is clipped to its visible part, and
    dropped when less than this share of it remains. Datasets that label the visible part of
    hands cut by the frame (EgoHands) are served better by a low value."""
    color_jitter: ColorJitter = ColorJitter()
    paste: HandPaste = HandPaste()
    mosaic: Fraction = 0.0
    """The share of training samples that are a mosaic of four frames (``data.mosaic``, as YOLO's):
    more hands and backgrounds per sample, and frames of different datasets side by side."""


class ModelSection(StrictModel):
    """What every spec's ``model`` section says: the architecture, its backbone and how it is initialised
    (``training.common.init_model``)."""

    arch: str
    backbone: Backbone = "mobilenet_v2"
    pretrained: bool = True
    """ImageNet weights for the backbone: all of it when no ``pretrained_model_file`` is given, else the backbone
    tensors that file lacks (a deeper stage a fine-tune adds)."""
    pretrained_model_file: ExistingPath | None = None
    """A checkpoint whose matching weights start the training."""
    load_graph: bool = False
    """Retrain ``pretrained_model_file``'s own graph (a pruned model's widths) rather than build ``arch``."""


class DetectorModel(ModelSection):
    arch: str = "detectnet_v2"
    head_channels: PositiveInt = 64
    strides: list[Literal[4, 8, 16, 32]] = Field(default_factory=lambda: [8])
    context_stride: Literal[16, 32] | None = None
    """Deepest backbone stage feeding the top-down neck (None: stride 16, or the largest head stride).
    32 brings the last backbone stage's wider context down to a stride-8 head (MobileNetV2: about a
    third more CPU time)."""
    positive_radius: Annotated[float, Field(ge=0.5)] = 0.5
    """Training targets: a cell is positive for a box when its centre lies within a quarter of the
    box size of the box centre, and at least this many strides (0.5, the least, gives every box a
    cell; 1.5 gives small hands 3x3 cells instead of one or two)."""
    positives_inside_box: bool = False
    """Training targets: a positive cell's centre must also lie inside its box (as in FCOS), or be the
    cell holding the box centre. Cells centred outside a box cannot regress it; without the rule, a hand
    less than ``2 * positive_radius`` strides tall (a sliver cut by the frame) is learnt from cells above
    and below it, whose boxes reach out to their own centres. Off by default: it did not raise test AP
    (docs/experiments.md)."""
    coverage_loss: CoverageLoss = "focal"
    """``focal``: positive cells' coverage is trained towards 1. ``quality_focal`` (GFL): towards the
    IoU of the cell's predicted box with its hand, so scores also rank boxes by fit (scores run
    lower: recalibrate a score threshold on validation data)."""


class Distillation(StrictModel):
    """Knowledge distillation: a trained detector's dense outputs as extra soft targets, e.g. the
    unpruned model while a pruned one retrains (``DetectNetV2.distillation_loss``)."""

    teacher_model_file: ExistingPath
    weight: PositiveFloat = 1.0


class DetectionPostprocessing(StrictModel):
    clustering: Clustering = "nms"
    coverage_threshold: Fraction = 0.05
    nms_iou_threshold: Fraction = 0.5
    dbscan_eps: Fraction = 0.3
    dbscan_min_samples: PositiveInt = 1
    max_detections: PositiveInt = 100
    minimum_box_size: Annotated[float, Field(ge=0)] = 4.0


class DetectionEvaluation(StrictModel):
    datasets: list[ExistingPath] = Field(default_factory=list)
    split: str = "test"
    kitti_iou_threshold: Fraction = 0.7
    minimum_height: Annotated[float, Field(ge=0)] = 4.0
    minimum_width: Annotated[float, Field(ge=0)] = 4.0


class DetectorSpec(StrictModel):
    dataset: DetectionDataset
    augmentation: DetectionAugmentation = DetectionAugmentation()
    model: DetectorModel = DetectorModel()
    training: Training = Training()
    postprocessing: DetectionPostprocessing = DetectionPostprocessing()
    evaluation: DetectionEvaluation = DetectionEvaluation()
    class_weights: dict[str, PositiveFloat] = Field(default_factory=dict)
    distillation: Distillation | None = None

    @model_validator(mode="after")
    def _classes_known(self) -> "DetectorSpec":
        unknown = set(self.class_weights) - set(self.dataset.classes)
        if unknown:
            raise ValueError(f"class_weights: unknown class {sorted(unknown)[0]!r}")
        paste = self.augmentation.paste
        if paste.sources and paste.label not in self.dataset.classes:
            raise ValueError(f"augmentation.paste.label: {paste.label!r} is not one of {self.dataset.classes}")
        return self


# ---------------------------------------------------------------- classifier

GESTURENET_CLASSES = ["thumbs_up", "fist", "stop", "ok", "two", "random"]


class CropConvention(StrictModel):
    """How a detector box becomes a classifier crop (shared by training and the cascade)."""

    margin_px: Annotated[float, Field(ge=0)] = 0.0
    enlarge_ratio: Annotated[float, Field(ge=1)] = 1.3
    square: bool = True


class ClassificationDataset(StrictModel):
    """Class folders (``root/<class>/*.jpg``) or ``.gkpack`` classification packs."""

    train: Sources = Field(min_length=1)
    val: Sources = Field(default_factory=list)
    train_split: str = "train"
    val_split: str = "val"
    classes: list[str] = Field(default_factory=lambda: list(GESTURENET_CLASSES), min_length=2)
    class_map: dict[str, str] = Field(default_factory=dict)


class ClassificationAugmentation(StrictModel):
    input_size: PositiveInt = 160
    hflip_probability: Fraction = 0.5
    scale_range: tuple[PositiveFloat, PositiveFloat] = (1.0, 1.6)
    translate: Fraction = 0.1
    rotation_degrees: Annotated[float, Field(ge=0, le=180)] = 15.0
    color_jitter: ColorJitter = ColorJitter()


class ClassifierModel(ModelSection):
    arch: str = "gesturenet"
    dropout: Fraction = 0.2
    box_class: str | None = None
    """Also regress the box of this class's object from the crop (a hand verifier that refines
    the detector's boxes); ``None``: no box head."""


class ClassificationEvaluation(StrictModel):
    datasets: list[ExistingPath] = Field(default_factory=list)
    split: str = "test"


class ClassifierSpec(StrictModel):
    dataset: ClassificationDataset
    augmentation: ClassificationAugmentation = ClassificationAugmentation()
    crop: CropConvention = CropConvention()
    model: ClassifierModel = ClassifierModel()
    training: Training = Training(epochs=30, batch_size_per_gpu=128)
    evaluation: ClassificationEvaluation = ClassificationEvaluation()
    label_smoothing: Fraction = 0.1

    @model_validator(mode="after")
    def _box_class_known(self) -> "ClassifierSpec":
        if self.model.box_class is not None and self.model.box_class not in self.dataset.classes:
            raise ValueError(f"model.box_class: {self.model.box_class!r} is not one of {self.dataset.classes}")
        return self
