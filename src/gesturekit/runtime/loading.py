"""Load a runtime detector or classifier from a zoo name, a model directory or a file.

``name_or_path`` is, in this order: an existing ``.onnx`` file (onnxruntime backend), an existing
``.pt`` checkpoint (torch backend), a directory holding ``model.onnx`` / ``model.pt``, or the name
of a zoo model (``models/zoo.py``).

Backends are looked up by name in ``BACKENDS``; each imports its library when first used, so that
the ONNX Runtime path never imports torch.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TypedDict, Unpack

from gesturekit.config.app import RefineBoxes
from gesturekit.errors import GesturekitError
from gesturekit.models.zoo import CHECKPOINT, ONNX, zoo_names, zoo_path
from gesturekit.runtime.backend import Backend
from gesturekit.runtime.classifier import GestureClassifier
from gesturekit.runtime.detector import HandDetector
from gesturekit.runtime.verifier import HandVerifier

BackendName = str
_FILES = {"onnxruntime": ONNX, "torch": CHECKPOINT}
BACKENDS: dict[str, tuple[str, str | None]] = {
    "onnxruntime": ("gesturekit.runtime.loading:onnxruntime_backend", None),
    "torch": ("gesturekit.runtime.loading:torch_backend", "train"),
    "triton": ("gesturekit.runtime.triton_backend:triton_backend", "serve"),
}
"""Backend name -> ``("module:factory", the pip extra that installs its library)``; the factory, imported on
first use, is called as ``factory(name_or_path, **BackendOptions) -> Backend``."""


class BackendOptions(TypedDict, total=False):
    """How a backend runs its model, passed through the load functions to its factory as keywords (the
    factory's defaults, CPU, its own thread count and full precision, apply to those left out)."""

    device: str
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (onnxruntime: the CUDA execution provider)."""
    threads: int | None
    """CPU threads (onnxruntime intra-op threads; torch: ``torch.set_num_threads``)."""
    half: bool
    """FP16 inference (torch backend on CUDA only)."""
    url: str | None
    """The server of a serving backend (triton)."""


def backend_for(model: str | Path, backend: BackendName | None = None) -> BackendName:
    """``backend`` when given, else torch for a ``.pt`` checkpoint and onnxruntime for anything else."""
    return backend or ("torch" if str(model).endswith(".pt") else "onnxruntime")


def resolve_model_file(name_or_path: str | Path, backend: BackendName) -> Path:
    """The model file for ``backend``: ``.onnx`` for onnxruntime, ``.pt`` for torch.

    Raises:
        GesturekitError: unknown name (the message lists the zoo) or a file the backend cannot run.
    """
    path = Path(name_or_path)
    if backend not in _FILES:
        raise GesturekitError(f"backend {backend!r} loads no model file (file backends: {', '.join(_FILES)})")
    if not path.exists():
        names = zoo_names()
        if str(name_or_path) not in names:
            raise GesturekitError(f"{name_or_path}: not a file, a directory or a zoo model "
                                  f"(zoo: {', '.join(names) or 'empty'})")
        path = zoo_path(str(name_or_path))
    if path.is_dir():
        others = [name for name in _FILES.values() if name != _FILES[backend] and (path / name).is_file()]
        path = path / _FILES[backend]
        if not path.is_file():
            only = f"; {path.parent.name} has only {others[0]}" if others else ""
            raise GesturekitError(f"{path}: not found (the {backend} backend needs {_FILES[backend]}{only})")
    wanted = Path(_FILES[backend]).suffix
    if path.suffix != wanted:
        hint = "export it with `gesturekit export`, or use the torch backend" if backend == "onnxruntime" \
            else "use the onnxruntime backend"
        raise GesturekitError(f"{path}: the {backend} backend needs a {wanted} file ({hint})")
    return path


def load_backend(name_or_path: str | Path, backend: BackendName = "onnxruntime",
                 **options: Unpack[BackendOptions]) -> Backend:
    """The ``backend`` (a name in ``BACKENDS``) over the model named by ``name_or_path`` (see module
    docstring), run as ``options`` say.

    Raises:
        GesturekitError: an unknown backend, one whose library is not installed (naming its extra), or a
            model it cannot load.
    """
    if backend not in BACKENDS:
        raise GesturekitError(f"unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
    target, extra = BACKENDS[backend]
    module, _, name = target.partition(":")
    try:
        return getattr(import_module(module), name)(name_or_path, **options)
    except ModuleNotFoundError as exc:
        if extra is None:
            raise
        raise GesturekitError(f"the {backend} backend needs {exc.name}: pip install 'gesturekit[{extra}]'") from None


def onnxruntime_backend(name_or_path: str | Path, device: str = "cpu", threads: int | None = None,
                        half: bool = False) -> Backend:
    """An ``OnnxRuntimeBackend`` on the CPU or a CUDA execution provider."""
    from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend

    path = resolve_model_file(name_or_path, "onnxruntime")
    if half:
        raise GesturekitError(f"{path}: half precision is for the torch backend (export an FP16 ONNX instead)")
    providers = None
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    elif device != "cpu":
        raise GesturekitError(f"device {device!r}: expected cpu, cuda or cuda:N")
    return OnnxRuntimeBackend(path, threads=threads, providers=providers)


def torch_backend(name_or_path: str | Path, device: str = "cpu", threads: int | None = None,
                  half: bool = False) -> Backend:
    """A ``TorchBackend`` over a ``.pt`` checkpoint (torch and the model code are imported here)."""
    import torch

    from gesturekit.optimize.restore import load_model_from_checkpoint
    from gesturekit.runtime.torch_backend import TorchBackend

    path = resolve_model_file(name_or_path, "torch")
    if threads:
        torch.set_num_threads(threads)
    return TorchBackend(load_model_from_checkpoint(path), device=device, half=half)


def load_detector(
    name_or_path: str | Path,
    backend: BackendName = "onnxruntime",
    *,
    score_threshold: float | None = None,
    verifier: str | Path | None = None,
    candidate_threshold: float = 0.1,
    trust_threshold: float = 0.6,
    verifier_weight: float = 0.3,
    refine_boxes: RefineBoxes = "doubtful",
    **options: Unpack[BackendOptions],
) -> HandDetector:
    """A ``HandDetector`` (model and backend as ``load_backend``; ``score_threshold`` overrides the model's),
    with ``verifier`` (a hand-vs-background classifier, loaded like the detector) as its second
    stage when given: the detector's candidates scoring from ``candidate_threshold`` to under
    ``trust_threshold`` are rescored (``verifier_weight``: its share of the new score), and those
    ``refine_boxes`` names moved by its box head (``runtime.verifier.HandVerifier``)."""
    second = None
    if verifier is not None:
        second = HandVerifier(load_classifier(verifier, backend, **options),
                              candidate_threshold, trust_threshold, verifier_weight, refine_boxes)
    return HandDetector(load_backend(name_or_path, backend, **options), score_threshold, second)


def load_classifier(name_or_path: str | Path, backend: BackendName = "onnxruntime",
                    **options: Unpack[BackendOptions]) -> GestureClassifier:
    """A ``GestureClassifier`` (arguments as ``load_backend``)."""
    return GestureClassifier(load_backend(name_or_path, backend, **options))
