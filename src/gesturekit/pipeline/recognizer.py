"""The public Python API: ``GestureRecognizer`` and the ``Result`` of one image or frame.

It holds the models of the app config (the shipped defaults unless told otherwise) and runs them
with the same objects as ``gesturekit infer``: ``recognize`` calls the cascade on one image;
``stream`` and ``run`` drive the app's threads (decode -> detector -> classifier -> tracker) over
any ``infer`` source.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gesturekit.config.app import AppConfig, load_app_config
from gesturekit.config.base import validate_spec
from gesturekit.errors import GesturekitError
from gesturekit.pipeline.app import (
    CascadeApp,
    SourceReport,
    load_cascade,
    open_sources,
    run_app,
    tracker_factory,
)
from gesturekit.pipeline.predictions import HandPrediction, prediction_record
from gesturekit.pipeline.sinks import draw_hands
from gesturekit.pipeline.sources import Frame, Source, open_source

_END = object()


def configure(config: AppConfig, **values: object) -> AppConfig:
    """Copy ``config`` with the ``section__key`` values that are not ``None`` (``primary__detector=...``),
    validated as the config file is."""
    sections: dict[str, dict[str, object]] = {}
    for dotted, value in values.items():
        if value is not None:
            section, key = dotted.split("__")
            sections.setdefault(section, {})[key] = value
    data = config.model_dump(by_alias=True, exclude_unset=True)  # unset keys keep defaults that follow others
    for section, updates in sections.items():
        data.setdefault(section, {}).update(updates)
    return validate_spec(data, AppConfig, "options")


@dataclass(frozen=True)
class Result:
    """The hands of one image or video frame.

    Attributes:
        hands: per hand ``bbox`` (x1, y1, x2, y2 pixels), ``score``, ``gesture``, ``gesture_score``,
            ``track_id`` (``None`` for still images).
        frame: the ``[H, W, 3]`` uint8 RGB image the hands were found on.
        source: the stream's uri (``stream``), ``None`` for a still image.
        index: the frame number in the stream (or the image number in a folder).
        pts: the frame's presentation time in seconds (video only).
        image: the image's path (``recognize`` of a path) or its path in a folder (``stream``).
    """

    hands: list[HandPrediction]
    frame: np.ndarray
    source: str | None = None
    index: int | None = None
    pts: float | None = None
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The prediction line of ``gesturekit infer --out-json`` (``pipeline.predictions``)."""
        if self.image is not None or self.source is None:
            return prediction_record(self.hands, image=self.image)
        return prediction_record(self.hands, source=self.source, frame=self.index, pts=self.pts)

    def plot(self) -> np.ndarray:
        """The frame with boxes, gestures and track ids drawn, as a new ``[H, W, 3]`` uint8 RGB array."""
        return draw_hands(self.frame, self.hands)


def as_rgb(image: Any) -> tuple[np.ndarray, str | None]:
    """An image given as a path, a PIL image or an ``[H, W, 3]`` uint8 RGB array -> the array and its
    path (``None`` unless given as one).

    Raises:
        GesturekitError: an unreadable file, a path that is no image, or an array of another shape or type.
    """
    if isinstance(image, (str, Path)):
        source = open_source(str(image))
        try:
            if not source.still or len(source.paths) != 1:  # type: ignore[attr-defined]
                raise GesturekitError(f"{image}: not one image (use GestureRecognizer.stream for videos and folders)")
            frame = next(iter(source.frames()), None)
        finally:
            source.close()
        if frame is None:
            raise GesturekitError(f"{image}: cannot read the image")
        return frame.image, str(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("RGB")), None
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return image, None
    raise GesturekitError(f"expected an image path, a PIL image or an HxWx3 uint8 RGB array, got "
                          f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}".rstrip())


class _Collect:
    """A sink that hands each frame's result to ``stream``'s caller through a bounded queue."""

    def __init__(self, size: int, stop: threading.Event, uri: str) -> None:
        self.results: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.stop = stop
        self.uri = uri

    def write(self, frame: Frame, hands: Sequence[HandPrediction], fps: float | None) -> None:
        result = Result(list(hands), frame.image, None if frame.name else self.uri, frame.index, frame.pts,
                        frame.name)
        while not self.stop.is_set():
            try:
                self.results.put(result, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        while not self.stop.is_set():
            try:
                self.results.put(_END, timeout=0.1)
                return
            except queue.Full:
                continue


class GestureRecognizer:
    """Hand detector -> verifier -> gesture classifier, the models and options of ``gesturekit infer``.

    Args:
        detector, classifier, verifier: zoo names or model files (default: the shipped models for the
            backend and device, ``models.zoo.default_models``).
        backend: ``onnxruntime`` (default on the CPU) or ``torch`` (default on CUDA).
        device: ``cpu`` (default) or ``cuda`` (the batched GPU cascade, ``pipeline.gpu_cascade``).
        score_threshold: keep hands scoring at least this (after the verifier).
        verify: rescore the detector's doubtful boxes with the verifier (default on).
        classify: name a gesture per hand (default on; off: every gesture is ``None``).
        track: track hands and vote their gestures in ``stream`` (default on).
        config: an app config (``AppConfig`` or a YAML path) whose other keys apply; the arguments
            above override it.
        url: the server of a serving backend (``runtime.loading.BACKENDS``).
        **options: further app config keys as ``section__key`` (``primary__refine_boxes="small"``,
            ``secondary__min_crop_size=24``, ``primary__threads=2``).

    Raises:
        GesturekitError: an unknown model or option, or a model that cannot be loaded.
    """

    def __init__(
        self,
        detector: str | Path | None = None,
        classifier: str | Path | None = None,
        verifier: str | Path | None = None,
        *,
        backend: str | None = None,
        device: str | None = None,
        score_threshold: float | None = None,
        verify: bool | None = None,
        classify: bool | None = None,
        track: bool | None = None,
        config: AppConfig | str | Path | None = None,
        url: str | None = None,
        **options: object,
    ) -> None:
        base = config if isinstance(config, AppConfig) else load_app_config(config)
        unknown = [k for k in options if k.count("__") != 1]
        if unknown:
            raise GesturekitError(f"GestureRecognizer: unknown option {unknown[0]!r} (app config keys are given "
                                  "as section__key, e.g. primary__refine_boxes)")
        self.config = configure(
            base, primary__detector=None if detector is None else str(detector),
            secondary__classifier=None if classifier is None else str(classifier),
            primary__verifier=None if verifier is None else str(verifier), primary__backend=backend,
            primary__device=device, primary__score_threshold=score_threshold, primary__verify=verify,
            secondary__enabled=classify, tracker__enabled=track, **options)
        self.cascade = load_cascade(self.config, **({"url": url} if url else {}))

    def recognize(self, image: Any) -> Result:
        """The hands of one image: a path, a PIL image or an ``[H, W, 3]`` uint8 RGB array (never tracked)."""
        frame, path = as_rgb(image)
        return Result(self.cascade([frame])[0], frame, image=path)

    def stream(self, source: str | Path, max_frames: int | None = None) -> Iterator[Result]:
        """The results of every frame of ``source`` (any ``gesturekit infer`` source: a video file, a
        folder of images, a camera, a stream URL), in order, hands tracked on video.

        Decoding and the two model stages run in their own threads while the caller handles a result;
        leaving the loop early stops them.
        """
        opened = open_sources(self.config.model_copy(update={"sources": [str(source)]}))[0]
        stop = threading.Event()
        collect = _Collect(self.config.streammux.queue_size, stop, opened.uri)
        app = self._app([opened], [[collect]], max_frames)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                app.run()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
                collect.close()

        worker = threading.Thread(target=run, name="gesturekit-stream", daemon=True)
        worker.start()
        try:
            while (item := collect.results.get()) is not _END:
                yield item
        finally:
            stop.set()
            app.stop()
            worker.join()
        if errors:
            raise errors[0]

    def run(self, sources: Sequence[Source] | None = None, emit: Callable[[str], None] = print) -> list[SourceReport]:
        """Run the app over ``sources`` (opened with ``pipeline.app.open_sources``; default: the config's)
        into the config's sinks (JSON Lines, annotated video, preview): ``gesturekit infer``."""
        return run_app(self.config, self.cascade, sources=sources, emit=emit)

    def _app(self, sources: list[Source], sinks: list[list[Any]], max_frames: int | None) -> CascadeApp:
        mux = self.config.streammux
        return CascadeApp(sources, self.cascade, sinks, tracker=tracker_factory(self.config),
                          max_frames=max_frames or mux.max_frames, queue_size=mux.queue_size,
                          live_queue_size=mux.live_queue_size, batch_timeout_s=mux.batch_timeout_s,
                          detect_workers=self.config.primary.workers)
