"""Throughput fixes of the cascade app: detector and classifier stages in two threads (the detector on
several batches at once if asked), per-source
average FPS, copy-free frame tensors and an ONNX Runtime session that does not spin."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gesturekit.models.zoo import ONNX, zoo_path
from gesturekit.pipeline.app import CascadeApp
from gesturekit.pipeline.cascade import Cascade
from gesturekit.pipeline.predictions import read_predictions
from gesturekit.pipeline.sinks import JsonSink, PerfMeter
from gesturekit.pipeline.sources import open_source
from gesturekit.pipeline.tracker import IoUTracker
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend
from test_pipeline_fakes import BrightnessClassifier, SquareDetector, write_video


class ThreadRecorder:
    """Wraps a model and records the name of every thread that calls it."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.threads: set[str] = set()
        self.crop = getattr(model, "crop", None)

    def __call__(self, items: list[np.ndarray]) -> list:
        self.threads.add(threading.current_thread().name)
        return self.model(items)  # type: ignore[operator]


def run(videos: list[Path], cascade: object, out: Path, detect_workers: int = 1) -> None:
    sources = [open_source(str(v), i) for i, v in enumerate(videos)]
    sinks = [[JsonSink(out.with_name(f"{out.stem}.{i}.jsonl"), str(v))] for i, v in enumerate(videos)]
    CascadeApp(sources, cascade, sinks, tracker=IoUTracker, detect_workers=detect_workers).run()  # type: ignore[arg-type]


class SlowSometimes:
    """A detector that sleeps up to 20 ms on some calls, so that concurrent batches finish out of order."""

    def __init__(self, model: object) -> None:
        self.model, self.calls = model, 0

    def __call__(self, frames: list[np.ndarray]) -> list:
        self.calls += 1
        time.sleep(0.02 * (self.calls % 3 == 1))
        return self.model(frames)  # type: ignore[operator]


def test_staged_cascade_runs_in_two_threads_with_the_single_thread_output(tmp_path: Path) -> None:
    videos = [write_video(tmp_path / "a.mp4", 14), write_video(tmp_path / "b.mp4", 9, 96, 64)]
    detector, classifier = ThreadRecorder(SquareDetector()), ThreadRecorder(BrightnessClassifier())
    staged = Cascade(detector, classifier, min_crop_size=4)
    run(videos, staged, tmp_path / "staged.jsonl")
    assert detector.threads == {"detect_0"} and classifier.threads == {"secondary"}

    run(videos, lambda frames: staged(frames), tmp_path / "single.jsonl")
    assert detector.threads == {"detect_0", "infer"}

    detector = ThreadRecorder(SlowSometimes(SquareDetector()))
    run(videos, Cascade(detector, classifier, min_crop_size=4), tmp_path / "workers.jsonl", detect_workers=3)
    assert len(detector.threads) > 1 and all(name.startswith("detect_") for name in detector.threads)
    for i, n in enumerate([14, 9]):
        lines = read_predictions(tmp_path / f"staged.{i}.jsonl")
        assert [r["frame"] for r in lines] == list(range(n))
        assert all(r["detections"][0]["gesture"] == "stop" for r in lines)
        assert lines == read_predictions(tmp_path / f"single.{i}.jsonl")
        assert lines == read_predictions(tmp_path / f"workers.{i}.jsonl")  # in order, with 3 batches at once


def test_a_failing_classifier_stage_raises_and_keeps_finished_frames_as_partial(tmp_path: Path) -> None:
    calls = {"n": 0}
    inner = BrightnessClassifier()

    def classify(crops: list[np.ndarray]) -> list[tuple[str, float]]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("classifier exploded")
        return inner(crops)

    classify.crop = inner.crop  # type: ignore[attr-defined]
    video = write_video(tmp_path / "a.mp4", 12)
    app = CascadeApp([open_source(str(video))], Cascade(SquareDetector(), classify, min_crop_size=4),
                     [[JsonSink(tmp_path / "p.jsonl", str(video))]], tracker=IoUTracker)
    with pytest.raises(RuntimeError, match="classifier exploded"):
        app.run()
    assert not (tmp_path / "p.jsonl").exists()  # a failed run publishes nothing at the output path
    assert [r["frame"] for r in read_predictions(tmp_path / "p.partial.jsonl")] == [0, 1, 2]


def test_average_fps_of_a_source_ends_at_its_last_frame() -> None:
    now = [0.0]
    meter = PerfMeter(["short", "long"], interval_s=0, clock=lambda: now[0])
    for i in range(1, 41):
        now[0] = i / 20
        meter.tick(1)
        if i <= 10:
            meter.tick(0)
    assert meter.average(0) == pytest.approx(10 / 0.5)  # not 10 frames over the long source's 2 s
    assert meter.average(1) == pytest.approx(40 / 2.0)


def test_onnxruntime_threads_spin_only_when_asked() -> None:
    backend = OnnxRuntimeBackend(zoo_path("hand-detector") / ONNX, threads=2)
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = OnnxRuntimeBackend(zoo_path("hand-detector") / ONNX, threads=2, spin=True)
    assert spinning.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
