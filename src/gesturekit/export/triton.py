"""Write a Triton Inference Server model repository from gesturekit ONNX models.

Each ``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf (``tritonclient``'s
``model_config_pb2``) from the ONNX graph (tensor names, types, dims) and the model's gesturekit
metadata, then printed with ``text_format``: the schema decides what a valid config is, not a
template. The metadata also travels in the config's ``parameters`` (key ``gesturekit``), so a client
reads classes, input size and postprocessing from the server rather than from a local copy.

Layout (docs/serving.md)::

    REPO/hand_detector/{config.pbtxt,1/model.onnx}
    REPO/hand_verifier/{config.pbtxt,1/model.onnx}          (with a verifier)
    REPO/gesture_classifier/{config.pbtxt,1/model.onnx}
    REPO/gesture_cascade/{config.pbtxt,1/model.py,1/*.onnx}  (Python backend: the whole cascade)

The cascade keeps its own copies of the ONNX files so that its directory is self-contained (Triton
fetches each model directory on its own from cloud storage). ``model_backend="python"`` gives the
single models a Python-backend ``model.py`` running ONNX Runtime instead of Triton's ``onnxruntime``
backend: the repository that ``gesturekit serve`` runs on the ``tritonserver`` binary of the
``nvidia-pytriton`` wheel, which ships the Python backend only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from google.protobuf import text_format
from onnx.helper import tensor_dtype_to_np_dtype
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import np_to_triton_dtype

from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_bytes, atomic_write_text
from gesturekit.models.metadata import ONNX_KEY, read_onnx_metadata

Accelerator = Literal["tensorrt"]
TrtPrecision = Literal["fp16", "int8"]
IoNames = Literal["gesturekit", "gesturenet"]
ModelBackend = Literal["onnxruntime", "python"]

DETECTOR, VERIFIER, CLASSIFIER, CASCADE = "hand_detector", "hand_verifier", "gesture_classifier", "gesture_cascade"
CASCADE_INPUT, CASCADE_OUTPUT = "image", "detections"
GESTURENET_NAMES = {"images": "input_1", "probs": "activation_18"}
"""The tensor names of NVIDIA's published GestureNet (input 3x160x160, output [6] softmax)."""
TRT_WORKSPACE_BYTES = 1 << 30
TRT_ENGINE_CACHE = "/tmp/gesturekit_trt_cache"
SEARCH_PATH_VARIABLE = "GESTUREKIT_PYTHONPATH"
"""Where ``gesturekit serve`` gives the backend stubs its interpreter's module search path: Triton's stub
embeds an interpreter that ignores ``PYTHONPATH`` and knows no virtual environment."""
_SEARCH_PATH = (f"import os, sys\nsys.path[:0] = [p for p in os.environ.get({SEARCH_PATH_VARIABLE!r}, '').split(os.pathsep)"
                " if p and p not in sys.path]\n")
MODEL_PY = {
    "onnx": _SEARCH_PATH + "from gesturekit.serve.triton_models import OnnxModel as TritonPythonModel\n",
    "cascade": _SEARCH_PATH + "from gesturekit.serve.triton_models import CascadeModel as TritonPythonModel\n",
}
"""The Python-backend ``model.py`` files: the model code lives in the package, where it is tested."""


@dataclass(frozen=True)
class RepositoryOptions:
    """How the repository serves its models.

    Attributes:
        max_batch_size: the largest batch Triton forms (``max_batch_size``; 1 with no dynamic batching).
        max_queue_delay_us: how long a request waits for others to batch with.
        instances: model instances (``instance_group.count``).
        device: ``cpu`` or ``cuda`` (``KIND_CPU`` / ``KIND_GPU`` instances; the cascade's ONNX Runtime device).
        accelerator: ``tensorrt``: the ONNX Runtime backend's TensorRT execution accelerator (GPU).
        trt_precision: the accelerator's precision mode.
        io_names: ``gesturenet`` renames the classifier's tensors as NVIDIA's GestureNet names them.
        model_backend: ``onnxruntime`` (Triton's backend) or ``python`` (``model.py`` running ONNX Runtime).
        threads: ONNX Runtime intra-op threads of each Python-backend model (0: ONNX Runtime's default).
        recognizer: ``GestureRecognizer`` keyword options of the cascade (``score_threshold``, ``verify``...).
        cascade_backend: what ``gesture_cascade`` runs: the ONNX files with ONNX Runtime, or (on ``cuda``) their
            torch checkpoints (``model.pt`` beside each ``model.onnx``, as in the zoo) in the batched GPU
            cascade, which batches the images of every request Triton's batcher hands it on the GPU.
    """

    max_batch_size: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    device: Literal["cpu", "cuda"] = "cpu"
    accelerator: Accelerator | None = None
    trt_precision: TrtPrecision = "fp16"
    io_names: IoNames = "gesturekit"
    model_backend: ModelBackend = "onnxruntime"
    threads: int = 0
    recognizer: Mapping[str, Any] | None = None
    cascade_backend: Literal["onnxruntime", "torch"] = "onnxruntime"

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.instances < 1:
            raise GesturekitError("max_batch_size and instances must be at least 1")
        if self.accelerator == "tensorrt" and self.model_backend != "onnxruntime":
            raise GesturekitError("--accelerator tensorrt needs Triton's onnxruntime backend "
                                  "(a repository for a Triton container, not for gesturekit serve)")
        if self.cascade_backend == "torch" and self.device != "cuda":
            raise GesturekitError("the torch cascade (the batched GPU cascade) serves on cuda only")


def triton_dims(value: onnx.ValueInfoProto) -> tuple[str, list[int]]:
    """``(TYPE_*, dims without the batch axis)`` of an ONNX graph input or output; a named axis is -1."""
    tensor = value.type.tensor_type
    dtype = "TYPE_" + np_to_triton_dtype(np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)))
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return dtype, dims[1:]


def rename_tensors(model: onnx.ModelProto, names: Mapping[str, str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs/outputs (and every node use of them) are renamed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for value in [*graph.input, *graph.output]:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    return out


def _batching(config: mc.ModelConfig, options: RepositoryOptions) -> None:
    config.max_batch_size = options.max_batch_size
    if options.max_batch_size > 1:
        sizes = sorted({max(1, options.max_batch_size // 2), options.max_batch_size})
        config.dynamic_batching.preferred_batch_size.extend(sizes)
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    kind = mc.ModelInstanceGroup.KIND_GPU if options.device == "cuda" else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=options.instances, kind=kind)


def _tensorrt(config: mc.ModelConfig, precision: TrtPrecision) -> None:
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters["precision_mode"] = precision.upper()
    accelerator.parameters["max_workspace_size_bytes"] = str(TRT_WORKSPACE_BYTES)
    accelerator.parameters["trt_engine_cache_enable"] = "1"
    accelerator.parameters["trt_engine_cache_path"] = f"{TRT_ENGINE_CACHE}/{config.name}"


def model_config(name: str, model: onnx.ModelProto, metadata: Mapping[str, Any],
                 options: RepositoryOptions) -> mc.ModelConfig:
    """The ``ModelConfig`` of one ONNX model: its tensors, batching, instances and metadata."""
    config = mc.ModelConfig(name=name, backend=options.model_backend)
    for values, add in ((model.graph.input, config.input.add), (model.graph.output, config.output.add)):
        for value in values:
            dtype, dims = triton_dims(value)
            add(name=value.name, data_type=mc.DataType.Value(dtype), dims=dims)
    _batching(config, options)
    if options.accelerator == "tensorrt":
        _tensorrt(config, options.trt_precision)
    config.parameters[ONNX_KEY].string_value = json.dumps(dict(metadata), separators=(",", ":"))
    if options.model_backend == "python" and options.threads:
        config.parameters["threads"].string_value = str(options.threads)
    return config


def cascade_config(files: Mapping[str, str], options: RepositoryOptions) -> mc.ModelConfig:
    """The ``gesture_cascade`` config: one encoded image per row in, one JSON array of hands per row out."""
    config = mc.ModelConfig(name=CASCADE, backend="python")
    config.input.add(name=CASCADE_INPUT, data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name=CASCADE_OUTPUT, data_type=mc.TYPE_STRING, dims=[1])
    _batching(config, options)
    recognizer = {"backend": options.cascade_backend, "device": options.device, **(options.recognizer or {})}
    if options.threads:
        recognizer.setdefault("primary__threads", options.threads)
    config.parameters["models"].string_value = json.dumps(dict(files))
    config.parameters["recognizer"].string_value = json.dumps(recognizer)
    return config


def _cascade_file(onnx_file: Path, options: RepositoryOptions) -> Path:
    """The file ``gesture_cascade`` runs for ``onnx_file``: itself, or the torch checkpoint beside it.

    Raises:
        GesturekitError: the torch cascade and no ``.pt`` checkpoint beside the ONNX file.
    """
    if options.cascade_backend == "onnxruntime":
        return onnx_file
    checkpoint = onnx_file.with_suffix(".pt")
    if not checkpoint.is_file():
        raise GesturekitError(f"{onnx_file}: the GPU cascade runs torch checkpoints, and there is no "
                              f"{checkpoint.name} beside it")
    return checkpoint


def config_text(config: mc.ModelConfig) -> str:
    """``config.pbtxt`` text of ``config``."""
    return text_format.MessageToString(config)


def _load(path: Path, task: str) -> tuple[onnx.ModelProto, dict[str, Any]]:
    metadata = read_onnx_metadata(path)
    if metadata.get("task") != task:
        raise GesturekitError(f"{path}: a {metadata.get('task')} model where a {task} model is needed")
    return onnx.load(str(path)), metadata


def _write_model(root: Path, name: str, model: onnx.ModelProto, metadata: Mapping[str, Any],
                 options: RepositoryOptions) -> None:
    atomic_write_bytes(root / name / "1" / "model.onnx", model.SerializeToString())
    if options.model_backend == "python":
        atomic_write_text(root / name / "1" / "model.py", MODEL_PY["onnx"])
    atomic_write_text(root / name / "config.pbtxt", config_text(model_config(name, model, metadata, options)))


def write_repository(
    output: str | Path,
    detector: str | Path,
    classifier: str | Path | None,
    verifier: str | Path | None = None,
    options: RepositoryOptions | None = None,
) -> Path:
    """Write the model repository to ``output`` (a new directory) and return it.

    Args:
        detector, classifier, verifier: gesturekit ``.onnx`` files (``classifier`` ``None``: detection only).

    Raises:
        GesturekitError: ``output`` exists, or a file is not a gesturekit model of the right task.
    """
    options = options or RepositoryOptions()
    output = Path(output)
    if output.exists():
        raise GesturekitError(f"{output}: already exists (choose a new repository directory)")
    models = {DETECTOR: (Path(detector), "detection")}
    if verifier is not None:
        models[VERIFIER] = (Path(verifier), "classification")
    if classifier is not None:
        models[CLASSIFIER] = (Path(classifier), "classification")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    cascade_dir = staging / CASCADE / "1"
    try:
        cascade_dir.mkdir(parents=True)
        files = {}
        for name, (path, task) in models.items():
            model, metadata = _load(path, task)
            if name == CLASSIFIER and options.io_names == "gesturenet":
                model = rename_tensors(model, GESTURENET_NAMES)
            _write_model(staging, name, model, metadata, options)
            cascade_file = _cascade_file(path, options)
            files[name] = f"{name}{cascade_file.suffix}"
            shutil.copyfile(cascade_file, cascade_dir / files[name])  # the cascade runs gesturekit's own tensor names
        atomic_write_text(staging / CASCADE / "1" / "model.py", MODEL_PY["cascade"])
        atomic_write_text(staging / CASCADE / "config.pbtxt", config_text(cascade_config(files, options)))
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output
