"""The streaming cascade app's config (the open counterpart of a DeepStream app config).

Sections: ``sources`` (inputs), ``streammux`` (batching, queues, reconnects), ``primary``
(hand detector), ``secondary`` (gesture classifier), ``tracker`` and ``sinks``. The commented
default is ``gesturekit/specs/app.yaml``; ``gesturekit infer`` flags override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gesturekit.config.base import StrictModel, load_spec

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
RefineBoxes = Literal["doubtful", "small", "all", "none"]
"""Which candidates a hand verifier's box head moves: those it rescores, every one (rescored or trusted) that its
crop shows at a higher resolution than the detector's input did, every one, or none."""


class Streammux(StrictModel):
    """How frames of all sources are decoded, queued and batched."""

    queue_size: PositiveInt = 8
    live_queue_size: PositiveInt = 2
    batch_timeout_s: NonNegativeFloat = 0.04
    max_frames: PositiveInt | None = None
    reconnect_attempts: NonNegativeInt = 5
    reconnect_backoff_s: PositiveFloat = 0.5


class Primary(StrictModel):
    """The hand detector (DeepStream's primary GIE)."""

    detector: str | None = None
    """A zoo name or a model file; ``None``: the default for the backend and device
    (``models.zoo.default_models``)."""
    backend: Literal["onnxruntime", "torch", "triton"] = "onnxruntime"
    """``triton``: the models of a Triton server (``GestureRecognizer(url=)``, ``infer --url``), named by their
    served names or by the local models they serve (``runtime.triton_backend.served_model``). Unset with
    ``device: cuda``: ``torch``, whose batched cascade is the fastest path there."""
    device: Literal["cpu", "cuda"] = "cpu"
    batched: bool | None = None
    """Run the batched cascade (``pipeline.gpu_cascade``): everything after decoding as tensor work per batch
    of frames on the device, Python per batch instead of per frame and hand. Torch backend only; ``None``:
    on for torch on CUDA, where per-frame Python would bound the frame rate."""
    precision: Literal["fp32", "fp16"] | None = None
    """Weights and inputs of the torch backend on CUDA (the detector, verifier and classifier alike);
    ``None``: fp16 there, fp32 elsewhere (an ONNX file carries its own precision)."""
    score_threshold: Fraction = 0.3
    """Applied to the verifier's scores when ``verify``; without the verifier about 0.4 keeps as few
    false positives, as the verifier removes the background boxes the detector scores low."""
    threads: PositiveInt | None = None
    """Inference threads (ONNX Runtime: per detector call); ``None``: one per core, except one per
    ONNX Runtime call when ``workers`` > 1."""
    workers: PositiveInt = 2
    """Batches of frames the detector runs at once, each in its own thread: a small model's call leaves
    cores idle between operators, so single-threaded calls side by side use them better than one
    call on several threads."""
    verify: bool = True
    """Rescore the detector's candidates with a hand verifier (``runtime/verifier.py``)."""
    verifier: str | None = None
    """A zoo name or a model file; ``None``: the default (``models.zoo.default_models``)."""
    candidate_threshold: Fraction = 0.1
    """The lowest detector score the verifier is asked about."""
    trust_threshold: Fraction = 0.6
    """Detector scores this high or higher keep their score without asking the verifier."""
    verifier_weight: Fraction = 0.3
    """The verifier's share of a rescored candidate's score, ``detector ** (1 - w) * p_hand ** w``.
    Higher finds more of the hands the detector scores low and lets through more false positives,
    about what a lower ``score_threshold`` trades."""
    refine_boxes: RefineBoxes = "doubtful"
    """Which candidates the verifier's box head moves: those it rescored; ``small``: every one, rescored or
    trusted, that its crop shows at a higher resolution than the detector's input did (small hands, whose
    boxes the detector's input is too coarse for; not large ones, whose loose labels the head does not
    learn); ``all``: every one (a crop each: better boxes, fewer frames per second); or none."""

    @model_validator(mode="before")
    @classmethod
    def _torch_on_cuda(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("device") == "cuda" and "backend" not in data:
            return {**data, "backend": "torch"}
        return data

    @model_validator(mode="after")
    def _batched_runs_on_torch(self) -> Primary:
        if self.batched and self.backend != "torch":
            raise ValueError(f"batched needs the torch backend (got {self.backend})")
        return self

    @property
    def runs_batched(self) -> bool:
        """Whether the app runs the batched cascade: ``batched``, or its default, on for torch on CUDA."""
        return self.batched if self.batched is not None else (self.backend, self.device) == ("torch", "cuda")

    @model_validator(mode="after")
    def _fp16_runs_on_cuda(self) -> Primary:
        if self.precision == "fp16" and (self.backend, self.device) != ("torch", "cuda"):
            raise ValueError(f"precision fp16 needs the torch backend on cuda (got {self.backend} on {self.device}; "
                             "an ONNX file carries its own precision)")
        return self

    @property
    def half(self) -> bool:
        """Whether the models run in FP16: ``precision``, or its default, fp16 for torch on CUDA."""
        on_cuda_torch = (self.backend, self.device) == ("torch", "cuda")
        return self.precision == "fp16" or (self.precision is None and on_cuda_torch)


class Secondary(StrictModel):
    """The gesture classifier on widened hand crops (DeepStream's secondary GIE)."""

    enabled: bool = True
    classifier: str | None = None
    """A zoo name or a model file; ``None``: the default for the backend and device
    (``models.zoo.default_models``)."""
    margin: NonNegativeFloat | None = None
    min_crop_size: PositiveInt = 32
    threads: PositiveInt | None = 1
    confirm_threshold: Fraction | None = 0.2
    """Hands the detector scores from this up to ``primary.score_threshold`` are kept when the
    classifier names a gesture (not ``catch_all``) with ``confirm_probability`` or more, as a gesture
    the classifier is sure of is rarely background; ``None``: never."""
    confirm_probability: Fraction = 0.5
    catch_all: str = "random"
    """The class that confirms no hand (GestureNet's ``random``)."""


class Tracker(StrictModel):
    """Per-source IoU tracker and gesture vote (video sources only)."""

    enabled: bool = True
    method: Literal["hungarian", "greedy"] = "hungarian"
    iou_threshold: Fraction = 0.3
    max_age: NonNegativeInt = 10
    vote_window: PositiveInt = 5


class Sinks(StrictModel):
    """Outputs; with several sources, ``json`` and ``video`` get the source number as a suffix."""

    json_path: Path | None = Field(default=None, alias="json")
    video: Path | None = None
    preview_port: Port | None = None
    perf_interval_s: NonNegativeFloat = 5.0


class AppConfig(StrictModel):
    sources: list[str] = Field(default_factory=list)
    streammux: Streammux = Streammux()
    primary: Primary = Primary()
    secondary: Secondary = Secondary()
    tracker: Tracker = Tracker()
    sinks: Sinks = Sinks()


def load_app_config(path: str | Path | None = None, overrides: list[str] | None = None) -> AppConfig:
    """The app config from a YAML file (defaults when ``path`` is ``None``).

    Raises:
        GesturekitError: missing file, invalid YAML, unknown key or bad value (one line each).
    """
    if path is None:
        return AppConfig()
    return load_spec(path, AppConfig, overrides)
