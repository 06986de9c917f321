"""The workflow file: which data to convert and pack, and which stage specs train, prune, quantize and
export the detector and the classifier. Strict like the specs: an unknown key or a wrong type is one
line naming the file and the key.

Paths are relative to the working directory. ``${VAR}`` is expanded from the environment, where
``GESTUREKIT_DATA`` defaults to ``../shared/data`` and ``GESTUREKIT_WORKFLOW_OUT`` is the workflow's
output folder, so that a stage spec names the packs and datasets the workflow writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from gesturekit.config.base import StrictModel, read_yaml, validate_spec
from gesturekit.data.classmap import PRESETS
from gesturekit.data.convert import FORMATS

OUT_VAR = "GESTUREKIT_WORKFLOW_OUT"
DATA_VAR = "GESTUREKIT_DATA"
DEFAULT_DATA = "../shared/data"

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Conversion(StrictModel):
    """One dataset converted to KITTI (``gesturekit data convert``) into ``OUT/data/<name>``."""

    format: str
    source: Path
    split: Literal["keep", "random", "group"] | None = None
    val_fraction: Annotated[float, Field(ge=0, le=0.95)] = 0.1
    seed: int = 0
    class_map_preset: str | None = None
    class_map: dict[str, str] = Field(default_factory=dict)
    limit: dict[str, PositiveInt] = Field(default_factory=dict)
    """Keep a seeded sample of at most this many images of each named split (a small slice for a
    quick run); splits not named are kept whole."""

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"unknown format {value!r} (known: {', '.join(FORMATS)})")
        return value

    @field_validator("class_map_preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        return _preset(value)


def _preset(value: str | None) -> str | None:
    if value is not None and value not in PRESETS:
        raise ValueError(f"unknown class map preset {value!r} (known: {', '.join(PRESETS)})")
    return value


class Packing(StrictModel):
    """One ``.gkpack`` (``gesturekit data pack``) written to ``OUT/packs/<name>.gkpack``.

    ``sources`` name converted datasets of this workflow, or are paths (e.g. class folders)."""

    sources: list[str] = Field(min_length=1)
    kind: Literal["detection", "classification"] = "detection"
    splits: list[str] | None = None
    max_size: PositiveInt = 512
    quality: Annotated[int, Field(ge=1, le=100)] = 90
    class_map_preset: str | None = None
    class_map: dict[str, str] = Field(default_factory=dict)
    holdout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    max_per_class: PositiveInt | None = None
    folders: list[str] | None = None
    """Class-folder sources: pack only these folders (each folder's hold-out is the same in any subset)."""
    context: Annotated[float, Field(ge=1)] = 2.0
    seed: int = 0

    @field_validator("class_map_preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        return _preset(value)


Keep = Literal["best", "last"]
"""Which checkpoint of a training run the chain carries on with: ``best`` (by validation; the last epoch when
the spec does not validate) or ``last``."""
CHAIN_NAMES = ("train", "pruned")
"""Names of the detector chain's own models: ``train`` (the first training) and ``pruned`` (retrained)."""


class SpecStage(StrictModel):
    """A training stage: a spec file (default: the model's own) and ``KEY.PATH=VALUE`` overrides."""

    spec: Path | None = None
    overrides: list[str] = Field(default_factory=list)
    keep: Keep = "best"


class Finetune(SpecStage):
    """A fine-tune of the detector before it in the chain (the first: ``train``'s model), named for ``prune.start``
    and ``qat.start``. ``distillation_weight`` makes the model it starts from its teacher; ``average`` (0-1) makes
    the chain's model the weight average ``average`` x fine-tuned + (1 - ``average``) x start (a model soup)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]
    distillation_weight: Annotated[float, Field(gt=0)] | None = None
    average: Annotated[float, Field(gt=0, lt=1)] | None = None


class Prune(StrictModel):
    """``gesturekit prune``: a fixed ``threshold`` (``-pth``), or with ``target_drop`` the largest of
    ``thresholds`` whose briefly retrained model loses at most that many AP@0.5 points."""

    threshold: Fraction = 0.1
    target_drop: Annotated[float, Field(ge=0)] | None = None
    thresholds: list[Fraction] | None = None
    retrain_epochs: PositiveInt = 1
    equalization: Literal["union", "intersection", "arithmetic_mean", "geometric_mean"] = "union"
    criterion: Literal["l2", "bn_scale"] = "l2"
    start: str | None = None
    """The chain's model to prune: ``train`` or a fine-tune's name (default: the last of the chain)."""


class Retrain(SpecStage):
    """The pruned graph retrained (``model.load_graph``); ``distillation_weight`` makes the unpruned
    model its teacher."""

    distillation_weight: Annotated[float, Field(gt=0)] | None = None


class Qat(SpecStage):
    """Quantization-aware training of a detector of the chain: ``start`` names it (``pruned``, ``train`` or a
    fine-tune's name; default: ``pruned`` when the chain retrains a pruned model, else its last model);
    ``distillation_weight`` makes that FP32 model the teacher of its quantized copy."""

    start: str | None = None
    distillation_weight: Annotated[float, Field(gt=0)] | None = None


class Export(StrictModel):
    """ONNX precisions of a model (each checked against PyTorch); int8 calibrates on the training data
    unless the model was trained with QAT. ``engine`` also builds a TensorRT engine (where installed)."""

    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(default_factory=lambda: ["fp32"], min_length=1)
    calibration: list[str] = Field(default_factory=list)
    """Datasets of this workflow (or paths) whose ``calibration_split`` calibrates int8."""
    calibration_split: str = "train"
    num_calibration: PositiveInt = 200
    engine: bool = False


class DetectorStages(StrictModel):
    """The detector's chain: train -> finetune... -> prune -> retrain -> qat; every stage after ``train`` is
    optional. ``export`` exports the chain's last unpruned model."""

    spec: Path
    overrides: list[str] = Field(default_factory=list)
    keep: Keep = "best"
    export: Export = Export()
    finetune: list[Finetune] = Field(default_factory=list)
    prune: Prune | None = None
    retrain: Retrain | None = None
    qat: Qat | None = None
    optimized_export: Export = Export()
    """How the pruned (retrained) detector exports; a QAT model exports as int8 from its learned ranges."""

    @model_validator(mode="after")
    def _chain(self) -> "DetectorStages":
        if self.retrain is not None and self.prune is None:
            raise ValueError("retrain: needs a prune section (it retrains the pruned graph)")
        names = [f.name for f in self.finetune]
        for name in names:
            if name in CHAIN_NAMES or names.count(name) > 1:
                raise ValueError(f"finetune: the name {name!r} is taken (by another fine-tune, or the chain's "
                                 f"{', '.join(CHAIN_NAMES)})")
        if self.prune is not None and self.prune.start not in (None, "train", *names):
            raise ValueError(f"prune.start: {self.prune.start!r} is not train or a fine-tune ({', '.join(names)})")
        pruned = ["pruned"] if self.retrain is not None else []
        if self.qat is not None and self.qat.start not in (None, "train", *names, *pruned):
            raise ValueError(f"qat.start: {self.qat.start!r} is not {', '.join(['train', *names, *pruned])}")
        return self


class ClassifierStages(StrictModel):
    spec: Path
    overrides: list[str] = Field(default_factory=list)
    keep: Keep = "best"
    export: Export = Export()


class Throughput(StrictModel):
    """The cards' throughput: ONNX Runtime on the CPU, images per second at each batch size."""

    batches: list[PositiveInt] = Field(default_factory=lambda: [1, 8], min_length=1)
    seconds: Annotated[float, Field(gt=0)] = 2.0
    threads: PositiveInt | None = None


class TritonRepo(StrictModel):
    """``gesturekit export triton-repo`` of two exported models (names under ``OUT/models``; default: the
    last detector and the last classifier exported) into ``OUT/triton_repo``."""

    detector: str | None = None
    classifier: str | None = None
    max_batch_size: PositiveInt = 8
    model_backend: Literal["onnxruntime", "python"] = "python"
    """``python``: the repository ``gesturekit serve`` runs; ``onnxruntime``: for a Triton container."""
    device: Literal["cpu", "cuda"] = "cpu"


class Workflow(StrictModel):
    name: str
    description: str = ""
    paths: dict[str, Path] = Field(default_factory=dict)
    """Where the stage specs' own data paths point in this workflow: a dataset or evaluation path of a spec
    that starts with a key (``.pack/gpu``) is read from its value (``${GESTUREKIT_WORKFLOW_OUT}/packs``), the
    longest key first, so a recipe runs on the workflow's packs with its data lists as written."""
    datasets: dict[str, Conversion] = Field(default_factory=dict)
    packs: dict[str, Packing] = Field(default_factory=dict)
    detector: DetectorStages | None = None
    classifier: ClassifierStages | None = None
    device: str | None = None
    """Training device: cpu, cuda or cuda:N (default: cuda if available)."""
    throughput: Throughput = Throughput()
    triton_repo: TritonRepo | None = None

    @model_validator(mode="after")
    def _names(self) -> "Workflow":
        clash = set(self.datasets) & set(self.packs)
        if clash:
            raise ValueError(f"packs: {sorted(clash)[0]!r} is also a dataset name")
        if self.detector is None and self.classifier is None:
            raise ValueError("detector / classifier: a workflow trains at least one model")
        return self


def remap_path(value: str, paths: dict[str, Path]) -> str:
    """``value`` with the longest matching ``paths`` prefix (whole path parts) replaced by its target."""
    parts = Path(value).parts
    for prefix in sorted(paths, key=lambda k: -len(Path(k).parts)):
        head = Path(prefix).parts
        if parts[:len(head)] == head:
            return str(Path(paths[prefix], *parts[len(head):]))
    return value


def remap_spec_data(data: dict[str, Any], paths: dict[str, Path]) -> dict[str, Any]:
    """A spec's raw dict with its dataset (train, val) and evaluation paths remapped by ``paths``."""
    if not paths:
        return data

    def entry(item: Any) -> Any:
        if isinstance(item, str):
            return remap_path(item, paths)
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            return {**item, "path": remap_path(item["path"], paths)}
        return item

    for section, keys in (("dataset", ("train", "val")), ("evaluation", ("datasets",))):
        node = data.get(section)
        for key in keys:
            if isinstance(node, dict) and isinstance(node.get(key), list):
                node[key] = [entry(item) for item in node[key]]
    return data


def set_environment(out: Path) -> None:
    """Export the variables a workflow file and its stage specs may name."""
    os.environ.setdefault(DATA_VAR, DEFAULT_DATA)
    os.environ[OUT_VAR] = str(out)


def load_workflow(path: Path, out: Path) -> Workflow:
    """Read and validate the workflow file, ``${GESTUREKIT_WORKFLOW_OUT}`` standing for ``out``.

    Raises:
        GesturekitError: one line per problem, naming ``path`` and the key.
    """
    set_environment(out)
    return validate_spec(read_yaml(path), Workflow, str(path))
