"""The concurrent cascade app: decode -> (mux, cascade, track) -> sinks, as threads.

One decode thread per source feeds a bounded per-source queue; the inference thread batches
one frame of every active source (DeepStream's stream muxer), runs the cascade and the
per-source trackers; the sink thread writes JSON, video, preview and FPS. A cascade with
``detect`` and ``classify`` stages (:class:`Cascade`) runs them in two threads (DeepStream's
primary and secondary GIE), so the detector works on the next batch while the classifier and
trackers finish this one; ``detect_workers`` lets the detector run that many batches at once
(each model call single-threaded keeps both cores busy for less CPU time than one call on two
threads). Results keep their order. Files apply
back-pressure (decoding waits); live sources drop their oldest queued frame instead (counted).
A source that ends leaves the batch; the others go on.

Shutdown loses nothing: SIGINT or SIGTERM stops the sources and lets every frame already decoded
pass through to the sinks; a second signal stops every stage at once. Either way each sink is
closed exactly once, by the sink thread that writes to it, so files are complete up to the last
frame written (and the JSON Lines have as many lines as the video has frames).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gesturekit.config.app import AppConfig
from gesturekit.errors import GesturekitError
from gesturekit.pipeline.cascade import Cascade, Classifier, Detector
from gesturekit.pipeline.predictions import HandPrediction
from gesturekit.pipeline.sinks import FileSink, JsonSink, PerfMeter, PreviewServer, Sink, VideoSink, output_path
from gesturekit.pipeline.sources import Frame, Reconnect, Source, open_source
from gesturekit.pipeline.tracker import IoUTracker

CascadeFn = Callable[[list[Any]], list[list[HandPrediction]]]
"""Frames in, per frame its hands out: ``Cascade`` or the batched ``GpuCascade``."""

_END = object()
ABORT_GRACE_S = 5.0  # after a second signal, how long the sinks get to finish their files


@dataclass(frozen=True)
class SourceReport:
    """What happened to one source: frames processed, skipped, dropped, reconnects, speed."""

    uri: str
    frames: int
    corrupt: int
    dropped: int
    reconnects: int
    fps: float
    error: str | None


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM; its sinks hold every frame processed (a KeyboardInterrupt,
    so that code catching Exception lets it through, as it would Ctrl-C).

    Attributes:
        signum: the signal.
        reports: what happened to each source until then.
        lingering: threads still inside a call (a stuck read) when the run returned.
    """

    def __init__(self, signum: int, reports: list[SourceReport], lingering: list[str]) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.reports = reports
        self.lingering = lingering


class StreamMux:
    """Per-source bounded queues behind one condition, batched one frame per source.

    Args:
        sources: the opened sources (their ``live`` flag picks drop-oldest or back-pressure).
        queue_size: frames queued per file source.
        live_queue_size: frames queued per live source before the oldest is dropped.
        batch_timeout_s: how long a batch waits for live sources once it has a frame.
    """

    def __init__(self, sources: Sequence[Source], queue_size: int, live_queue_size: int,
                 batch_timeout_s: float) -> None:
        self.sources = list(sources)
        self.sizes = [live_queue_size if s.live else queue_size for s in sources]
        self.batch_timeout_s = batch_timeout_s
        self.queues: list[deque[Any]] = [deque() for _ in sources]
        self.active = list(range(len(sources)))
        self.cond = threading.Condition()
        self.stopped = False
        self.draining = False

    def put(self, source_id: int, item: Any) -> None:
        """Queue a frame (or the end marker); waits for room, or drops the oldest when live."""
        source = self.sources[source_id]
        with self.cond:
            q = self.queues[source_id]
            if source.live:
                if len(q) >= self.sizes[source_id]:
                    q.popleft()
                    source.stats.dropped += 1
            else:
                while len(q) >= self.sizes[source_id] and not self.stopped:
                    self.cond.wait(0.1)
            q.append(item)
            self.cond.notify_all()

    def stop(self) -> None:
        """End every batch now: queued frames are dropped."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def drain(self) -> None:
        """End each source once its queued frames are batched (a source still reading adds no more)."""
        with self.cond:
            self.draining = True
            self.cond.notify_all()

    def next_batch(self) -> list[Frame] | None:
        """The next frame of every active source (live ones only within the batch timeout).

        Returns ``None`` when every source has ended (or on stop); may return an empty list
        when only end markers were taken.
        """
        with self.cond:
            deadline = None
            while True:
                if self.draining:
                    self.active = [s for s in self.active if self.queues[s] and self.queues[s][0] is not _END]
                if self.stopped or not self.active:
                    return None
                ready = [s for s in self.active if self.queues[s]]
                missing = [s for s in self.active if not self.queues[s]]
                if ready and not missing:
                    break
                wait = 0.1
                if ready and all(self.sources[s].live for s in missing):
                    now = time.monotonic()
                    deadline = deadline or now + self.batch_timeout_s
                    if now >= deadline:
                        break
                    wait = deadline - now
                self.cond.wait(wait)
            batch = []
            for s in ready:
                item = self.queues[s].popleft()
                if item is _END:
                    self.active.remove(s)
                else:
                    batch.append(item)
            self.cond.notify_all()
            return batch


class CascadeApp:
    """Run the cascade over sources into sinks with decode, inference and sink threads.

    Args:
        sources: opened sources, ``source_id`` = position.
        cascade: the detector -> classifier cascade; one with ``detect(frames)`` and
            ``classify(frames, detections)`` runs them in two threads.
        sinks: per source, the sinks that get its frames.
        shared_sinks: sinks that get every source's frames (the preview).
        tracker: builds a tracker for each video source; ``None`` disables tracking.
        max_frames: frames per source at most.
        perf: FPS meter ticked per processed frame.
        detect_workers: batches a staged cascade's detector runs at once.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        cascade: CascadeFn,
        sinks: Sequence[Sequence[Sink]] | None = None,
        *,
        shared_sinks: Sequence[Sink] = (),
        tracker: Callable[[], IoUTracker] | None = None,
        max_frames: int | None = None,
        queue_size: int = 8,
        live_queue_size: int = 2,
        batch_timeout_s: float = 0.04,
        perf: PerfMeter | None = None,
        detect_workers: int = 1,
    ) -> None:
        self.sources = list(sources)
        self.cascade = cascade
        self.sinks = [list(s) for s in sinks] if sinks is not None else [[] for _ in self.sources]
        self.shared_sinks = list(shared_sinks)
        self.trackers = {
            s.source_id: tracker() for s in self.sources if tracker is not None and not s.still
        }
        self.max_frames = max_frames
        self.mux = StreamMux(self.sources, queue_size, live_queue_size, batch_timeout_s)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        detect, classify = getattr(cascade, "detect", None), getattr(cascade, "classify", None)
        self.stages = (detect, classify) if callable(detect) and callable(classify) else None
        self.detect_workers = detect_workers
        self.detected: queue.Queue[Any] = queue.Queue(maxsize=2 * detect_workers)  # batches and their futures
        self.perf = perf or PerfMeter([s.uri for s in self.sources], interval_s=0)
        self.stop_event = threading.Event()  # every stage stops
        self.sources_stop = threading.Event()  # the decoders stop; what they decoded goes on
        self.interrupted: int | None = None  # the signal that stopped the run
        self.errors: list[BaseException] = []
        self.notes: list[str] = []  # what the file sinks did with their files, when not the usual

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - re-raised by run()
                self.errors.append(exc)
                self.stop()
        return run

    def stop(self) -> None:
        """Ask every stage to finish now (a second signal, a stage failed, or the caller is done)."""
        self.sources_stop.set()
        self.stop_event.set()
        self.mux.stop()

    def interrupt(self) -> None:
        """Stop reading the sources; the frames already read still reach the sinks."""
        self.sources_stop.set()
        self.mux.drain()

    def _on_signal(self, signum: int, _frame: object) -> None:
        """First SIGINT/SIGTERM: :meth:`interrupt`; second: :meth:`stop`; a third one is not caught."""
        if self.interrupted is None:
            self.interrupted = signum
            self.interrupt()
            return
        self.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)

    def _decode(self, source: Source) -> None:
        try:
            for frame in source.frames(self.max_frames, self.sources_stop):
                self.mux.put(source.source_id, frame)
        finally:
            self.mux.put(source.source_id, _END)

    def _infer(self) -> None:
        """The cascade and trackers in one thread (a cascade without stages)."""
        try:
            while (batch := self.mux.next_batch()) is not None:
                if batch:
                    self._track(batch, self.cascade([f.image for f in batch]))
        finally:
            self._put(self.results, _END)

    def _primary(self, detect: Callable[[list[Any]], list[Any]]) -> None:
        """The detector stage of a staged cascade: ``detect_workers`` batches at once, queued in order."""
        try:
            with ThreadPoolExecutor(self.detect_workers, thread_name_prefix="detect") as pool:
                while (batch := self.mux.next_batch()) is not None:
                    if batch:
                        self._put(self.detected, (batch, pool.submit(detect, [f.image for f in batch])))
        finally:
            self._put(self.detected, _END)

    def _secondary(self, classify: Callable[[list[Any], list[Any]], list[list[HandPrediction]]]) -> None:
        """The classifier stage of a staged cascade, then the trackers."""
        try:
            while (item := self._take(self.detected)) is not _END:
                batch, detections = item
                self._track(batch, classify([f.image for f in batch], detections.result()))
        finally:
            self._put(self.results, _END)

    def _track(self, batch: list[Frame], predictions: list[list[HandPrediction]]) -> None:
        for frame, hands in zip(batch, predictions):
            tracker = self.trackers.get(frame.source_id)
            if tracker is not None:
                hands = tracker.update(hands)
            self._put(self.results, (frame, hands))

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        """Queue ``item``, waiting for room unless the app is stopping."""
        while not self.stop_event.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _take(self, q: queue.Queue[Any]) -> Any:
        """The next item of ``q``; the end marker once the app is stopping and ``q`` is empty."""
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop_event.is_set():
                    return _END

    def _write(self) -> None:
        """The sink thread: write every result, then close every sink (its files complete unless a
        stage or a sink failed)."""
        failed = True
        try:
            while (item := self._take(self.results)) is not _END:
                frame, hands = item
                self.perf.tick(frame.source_id)
                fps = self.perf.fps(frame.source_id)
                for sink in (*self.sinks[frame.source_id], *self.shared_sinks):
                    sink.write(frame, hands, fps)
            failed = False
        finally:
            self._close_sinks(complete=not failed and not self.errors)

    def _close_sinks(self, complete: bool) -> None:
        for sink in (*[s for group in self.sinks for s in group], *self.shared_sinks):
            try:
                note = sink.close(complete) if isinstance(sink, FileSink) else sink.close()
            except BaseException as exc:  # noqa: BLE001 - the other sinks still close; run() re-raises
                self.errors.append(exc)
                continue
            if note:
                self.notes.append(note)

    def run(self) -> list[SourceReport]:
        """Process every source to its end (or ``max_frames``); re-raise a stage's error.

        Run from the main thread, it handles SIGINT and SIGTERM (:meth:`_on_signal`) until it
        returns, and raises :class:`Interrupted` after a signal, once the sinks are closed.
        """
        threads = [
            threading.Thread(target=self._guard(lambda s=s: self._decode(s)), name=f"decode-{s.source_id}",
                             daemon=True)
            for s in self.sources
        ]
        if self.stages is not None:
            detect, classify = self.stages
            stages = [("primary", lambda: self._primary(detect)), ("secondary", lambda: self._secondary(classify))]
        else:
            stages = [("infer", self._infer)]
        threads += [threading.Thread(target=self._guard(body), name=name, daemon=True) for name, body in stages]
        writer = threading.Thread(target=self._guard(self._write), name="sinks", daemon=True)
        threads.append(writer)
        previous = self._catch_signals()
        try:
            for t in threads:
                t.start()
            self._wait(writer)
        except KeyboardInterrupt:  # signals not ours to catch: the sink thread still closes the sinks
            self.stop()
            writer.join(ABORT_GRACE_S)
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
            deadline = time.monotonic() + ABORT_GRACE_S
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self._close_sources(threads[: len(self.sources)])
        if self.errors:
            raise self.errors[0]
        if self.interrupted is not None:
            raise Interrupted(self.interrupted, self.report(), [t.name for t in threads if t.is_alive()])
        return self.report()

    def _catch_signals(self) -> dict[int, Any]:
        """Route SIGINT and SIGTERM to :meth:`_on_signal` (main thread only); the previous handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _wait(self, writer: threading.Thread) -> None:
        """Until the sink thread is done, or for :data:`ABORT_GRACE_S` once every stage was told to stop."""
        stopped_at = None
        while writer.is_alive():
            writer.join(0.2)
            if self.stop_event.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > ABORT_GRACE_S:
                    return

    def _close_sources(self, decoders: Sequence[threading.Thread]) -> None:
        """Close every source whose decoder has returned (a decoder still blocked in a read keeps
        its container; it closes it when the read returns)."""
        for source, decoder in zip(self.sources, decoders):
            if not decoder.is_alive():
                source.close()

    def report(self) -> list[SourceReport]:
        return [
            SourceReport(s.uri, self.perf.total[s.source_id], s.stats.corrupt, s.stats.dropped,
                         s.stats.reconnects, self.perf.average(s.source_id), s.stats.error)
            for s in self.sources
        ]


def model_names(config: AppConfig) -> dict[str, str | None]:
    """The ``detector``, ``verifier`` and ``classifier`` the config names (``None`` when disabled);
    unnamed ones are the defaults for the backend and device (``models.zoo.default_models``)."""
    from gesturekit.models.zoo import default_models

    primary, secondary = config.primary, config.secondary
    defaults = default_models(primary.backend, primary.device)
    return {
        "detector": primary.detector or defaults["detector"],
        "verifier": (primary.verifier or defaults["verifier"]) if primary.verify else None,
        "classifier": (secondary.classifier or defaults["classifier"]) if secondary.enabled else None,
    }


def load_models(config: AppConfig, **backend_options: Any) -> tuple[Detector, Classifier | None]:
    """The detector (with its verifier) and (unless disabled) classifier named by the config, via
    ``runtime.loading`` (``backend_options``: the backend's own, e.g. a server's ``url``). The detector
    keeps the hands a classifier may confirm (``build_cascade``)."""
    from gesturekit.runtime import loading

    primary, secondary = config.primary, config.secondary
    names = model_names(config)
    floor = primary.score_threshold
    if names["classifier"] is not None and secondary.confirm_threshold is not None:
        floor = min(floor, secondary.confirm_threshold)
    threads = primary.threads
    if threads is None and primary.workers > 1 and primary.backend == "onnxruntime":
        threads = 1  # one per call, as many calls as workers (torch threads are per process)
    with ThreadPoolExecutor(2, thread_name_prefix="load") as pool:  # the sessions build their graphs at once
        detector = pool.submit(
            loading.load_detector, names["detector"], backend=primary.backend, device=primary.device, threads=threads,
            half=primary.half, score_threshold=floor, verifier=names["verifier"],
            candidate_threshold=primary.candidate_threshold, trust_threshold=primary.trust_threshold,
            verifier_weight=primary.verifier_weight, refine_boxes=primary.refine_boxes, **backend_options)
        classifier = None
        if names["classifier"] is not None:
            # torch threads are per process: only ONNX Runtime sessions get their own thread count
            threads = secondary.threads if primary.backend == "onnxruntime" else primary.threads
            classifier = pool.submit(loading.load_classifier, names["classifier"], backend=primary.backend,
                                     device=primary.device, threads=threads, half=primary.half, **backend_options)
        return detector.result(), None if classifier is None else classifier.result()


def build_cascade(config: AppConfig, detector: Detector, classifier: Classifier | None) -> Cascade:
    """The cascade the config describes around loaded models (``load_models``)."""
    secondary = config.secondary
    return Cascade(detector, classifier if secondary.enabled else None,
                   score_threshold=config.primary.score_threshold, margin_px=secondary.margin,
                   min_crop_size=secondary.min_crop_size, confirm_threshold=secondary.confirm_threshold,
                   confirm_probability=secondary.confirm_probability, catch_all=secondary.catch_all)


def load_cascade(config: AppConfig, **backend_options: Any) -> CascadeFn:
    """The cascade the config describes, its models loaded: the batched cascade on the config's device when
    ``primary.runs_batched`` (``pipeline.gpu_cascade``, torch imported only then), else ``Cascade`` over
    the runtime's models (``load_models``, ``build_cascade``)."""
    if config.primary.runs_batched:
        from gesturekit.pipeline.gpu_cascade import GpuCascade

        return GpuCascade.from_config(config, device=config.primary.device)
    return build_cascade(config, *load_models(config, **backend_options))


def tracker_factory(config: AppConfig) -> Callable[[], IoUTracker] | None:
    """What builds each video source's tracker as the config describes it; ``None`` when tracking is off."""
    track = config.tracker
    if not track.enabled:
        return None
    return lambda: IoUTracker(track.iou_threshold, track.max_age, track.vote_window, track.method)


def build_sinks(config: AppConfig, sources: Sequence[Source], numbers: Sequence[int] | None = None,
                total: int | None = None) -> tuple[list[list[Sink]], list[Sink]]:
    """Per-source JSON/video sinks (paths suffixed by source number when several) and the
    shared preview.

    Args:
        numbers, total: each source's number in its paths, out of how many sources (default: its
            ``source_id`` out of ``len(sources)``): a worker process running some of a run's sources
            (``pipeline.processes``) names their files as the whole run does.
    """
    numbers = list(numbers) if numbers is not None else [s.source_id for s in sources]
    total = total if total is not None else len(sources)
    out: list[list[Sink]] = [[] for _ in sources]
    shared: list[Sink] = []
    try:
        for source in sources:
            if config.sinks.json_path is not None:
                path = output_path(config.sinks.json_path, numbers[source.source_id], total)
                out[source.source_id].append(JsonSink(path, source.uri))
            if config.sinks.video is not None:
                if source.still:
                    raise GesturekitError(f"{source.uri}: an annotated video needs a video source, not images")
                path = output_path(config.sinks.video, numbers[source.source_id], total)
                out[source.source_id].append(VideoSink(path, source.fps))
        if config.sinks.preview_port is not None:
            shared.append(PreviewServer(config.sinks.preview_port, len(sources)))
    except BaseException:
        for sink in (*[s for group in out for s in group], *shared):
            sink.close()
        raise
    return out, shared


def open_sources(config: AppConfig) -> list[Source]:
    """Open every source of the config (``source_id`` = position).

    Raises:
        GesturekitError: no source, or a source missing/unreadable (those opened are closed).
    """
    if not config.sources:
        raise GesturekitError("no source: give SOURCE arguments or a sources: list in the config")
    mux = config.streammux
    reconnect = Reconnect(attempts=mux.reconnect_attempts, backoff_s=mux.reconnect_backoff_s)
    sources: list[Source] = []
    try:
        for i, spec in enumerate(config.sources):
            sources.append(open_source(spec, i, reconnect=reconnect))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def run_app(
    config: AppConfig,
    cascade: CascadeFn,
    *,
    sources: Sequence[Source] | None = None,
    emit: Callable[[str], None] = print,
    numbers: Sequence[int] | None = None,
    total: int | None = None,
) -> list[SourceReport]:
    """Run the cascade app over the config's sources to their end; return a report per source.

    Args:
        sources: already opened with :func:`open_sources` (opened here when ``None``).
        emit: where FPS lines and the preview address go.
        numbers, total: the sources' numbers in the output paths and FPS lines, out of how many
            (:func:`build_sinks`).

    Raises:
        GesturekitError: no source, a source missing/unreadable, or an output that cannot be
            created, before any frame is processed.
        Interrupted: SIGINT or SIGTERM stopped the run (run from the main thread).
    """
    sources = list(sources) if sources is not None else open_sources(config)
    try:
        sinks, shared = build_sinks(config, sources, numbers, total)
    except BaseException:
        for source in sources:
            source.close()
        raise
    for sink in shared:
        if isinstance(sink, PreviewServer):
            emit(f"preview: http://127.0.0.1:{sink.port}/")
    mux = config.streammux
    app = CascadeApp(
        sources, cascade, sinks, shared_sinks=shared, tracker=tracker_factory(config), max_frames=mux.max_frames,
        queue_size=mux.queue_size, live_queue_size=mux.live_queue_size,
        batch_timeout_s=mux.batch_timeout_s,
        perf=PerfMeter(config.sources, config.sinks.perf_interval_s, emit, labels=numbers),
        detect_workers=config.primary.workers,
    )
    try:
        return app.run()
    finally:
        for note in app.notes:
            emit(note)
