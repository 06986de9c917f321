"""The concurrent app: multi-source batching, early-ending sources, corrupt input, live drops."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from gesturekit.config.app import AppConfig
from gesturekit.errors import GesturekitError
from gesturekit.pipeline.app import CascadeApp, Interrupted, SourceReport, build_cascade, run_app
from gesturekit.pipeline.cascade import Cascade
from gesturekit.pipeline.predictions import read_predictions
from gesturekit.pipeline.sinks import JsonSink, VideoSink
from gesturekit.pipeline.sources import Frame, Source, open_source
from gesturekit.pipeline.tracker import IoUTracker
from test_pipeline_fakes import BrightnessClassifier, SquareDetector, write_video
from test_pipeline_sources import corrupt_middle


def config(sources: list[Path | str], out: Path, **sections: dict) -> AppConfig:
    data = {
        "sources": [str(s) for s in sources],
        "secondary": {"min_crop_size": 4},
        "sinks": {"json": str(out), "perf_interval_s": 0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return AppConfig.model_validate(data)


def run(cfg: AppConfig, detector: object, classifier: object) -> list[SourceReport]:
    """``run_app`` with the cascade the config builds around the fakes."""
    return run_app(cfg, build_cascade(cfg, detector, classifier))  # type: ignore[arg-type]


def test_sources_of_different_lengths_batch_together_and_match_single_runs(tmp_path: Path) -> None:
    short = write_video(tmp_path / "short.mp4", 12, 64, 48)
    long = write_video(tmp_path / "long.mp4", 20, 96, 64)
    detector = SquareDetector()
    reports = run(config([short, long], tmp_path / "multi.jsonl"), detector, BrightnessClassifier())
    assert detector.batch_sizes == [2] * 12 + [1] * 8  # the short source leaves the batch
    assert [(r.frames, r.corrupt, r.error) for r in reports] == [(12, 0, None), (20, 0, None)]

    for i, (video, n) in enumerate([(short, 12), (long, 20)]):
        multi = read_predictions(tmp_path / f"multi.{i}.jsonl")
        assert [r["frame"] for r in multi] == list(range(n))
        assert {r["source"] for r in multi} == {str(video)}
        run(config([video], tmp_path / f"single{i}.jsonl"), SquareDetector(), BrightnessClassifier())
        assert multi == read_predictions(tmp_path / f"single{i}.jsonl")
        assert all(len(r["detections"]) == 1 for r in multi)
        assert {r["detections"][0]["track_id"] for r in multi} == {0}  # one hand, one track


def test_corrupt_frames_are_skipped_counted_and_do_not_stop_others(tmp_path: Path) -> None:
    bad = corrupt_middle(write_video(tmp_path / "a.mp4", 20), tmp_path / "bad.mp4")
    good = write_video(tmp_path / "good.mp4", 15)
    reports = run(config([bad, good], tmp_path / "p.jsonl"), SquareDetector(), None)
    assert reports[0].corrupt >= 1 and 0 < reports[0].frames < 20
    assert reports[1].frames == 15 and reports[1].corrupt == 0
    assert len(read_predictions(tmp_path / "p.0.jsonl")) == reports[0].frames
    assert len(read_predictions(tmp_path / "p.1.jsonl")) == 15


def test_missing_source_fails_before_anything_is_written(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", 5)
    with pytest.raises(GesturekitError) as err:
        run(config([good, tmp_path / "nope.mp4"], tmp_path / "p.jsonl"), SquareDetector(), None)
    assert str(err.value) == f"{tmp_path / 'nope.mp4'}: no such file or folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.mp4"]


def test_image_folder_lines_are_untracked(tmp_path: Path) -> None:
    for i, name in enumerate(["x/1.png", "2.png"]):
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        img = np.zeros((40, 50, 3), np.uint8)
        img[5 + i:20 + i, 10:30] = 255
        Image.fromarray(img).save(tmp_path / "imgs" / name)
    run(config([tmp_path / "imgs"], tmp_path / "p.jsonl"), SquareDetector(), BrightnessClassifier())
    lines = read_predictions(tmp_path / "p.jsonl")
    assert [r["image"] for r in lines] == ["2.png", "x/1.png"]
    assert lines[0]["detections"] == [
        {"bbox": [10.0, 6.0, 30.0, 21.0], "score": 0.9, "gesture": "stop", "gesture_score": 0.8, "track_id": None}
    ]


def test_max_frames_and_disabled_tracker(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", 12)
    cfg = config([video], tmp_path / "p.jsonl", streammux={"max_frames": 4}, tracker={"enabled": False})
    run(cfg, SquareDetector(), None)
    lines = read_predictions(tmp_path / "p.jsonl")
    assert [r["frame"] for r in lines] == [0, 1, 2, 3]
    assert all(d["track_id"] is None and d["gesture"] is None for r in lines for d in r["detections"])


class LiveSource(Source):
    """A fast live source: ``n`` frames as quickly as it can."""

    live = True

    def __init__(self, n: int) -> None:
        super().__init__("live://fake", 0)
        self.n = n

    def frames(self, max_frames: int | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
        for i in range(self.n):
            self.stats.frames += 1
            yield Frame(0, i, np.zeros((16, 16, 3), np.uint8), pts=i / 30)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[int] = []
        self.closed = False

    def write(self, frame: Frame, hands: list, fps: float | None) -> None:
        self.frames.append(frame.index)

    def close(self) -> None:
        self.closed = True


def test_live_source_drops_instead_of_queueing(tmp_path: Path) -> None:
    def slow(images: list[np.ndarray]) -> list[list]:
        time.sleep(0.002)
        return [[] for _ in images]

    source, sink = LiveSource(300), Recorder()
    (report,) = CascadeApp([source], slow, [[sink]], live_queue_size=2).run()
    assert report.dropped > 0
    assert report.frames + report.dropped == 300 == len(sink.frames) + source.stats.dropped
    assert sink.frames == sorted(sink.frames) and sink.frames[-1] == 299  # newest frames kept
    assert sink.closed


def test_a_failing_stage_raises_and_keeps_its_partial_output_beside_the_old_one(tmp_path: Path) -> None:
    calls = {"n": 0}
    cascade = Cascade(SquareDetector(), None)

    def failing(images: list[np.ndarray]) -> list[list]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("model exploded")
        return cascade(images)

    video = write_video(tmp_path / "a.mp4", 12)
    (tmp_path / "p.jsonl").write_text("an earlier run's results\n")
    app = CascadeApp([open_source(str(video))], failing, [[JsonSink(tmp_path / "p.jsonl", str(video))]],
                     tracker=IoUTracker)
    with pytest.raises(RuntimeError, match="model exploded"):
        app.run()
    assert (tmp_path / "p.jsonl").read_text() == "an earlier run's results\n"
    assert [r["frame"] for r in read_predictions(tmp_path / "p.partial.jsonl")] == [0, 1, 2]
    assert app.notes == [f"{tmp_path / 'p.jsonl'}: left unchanged; partial results in {tmp_path / 'p.partial.jsonl'}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "p.jsonl", "p.partial.jsonl"]


def test_a_run_without_frames_leaves_an_existing_output_alone(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "p.jsonl").write_text("kept\n")
    app = CascadeApp([open_source(str(folder))], Cascade(SquareDetector(), None),
                     [[JsonSink(tmp_path / "p.jsonl", str(folder))]])
    (report,) = app.run()
    assert report.corrupt == 1 and report.frames == 0
    assert (tmp_path / "p.jsonl").read_text() == "kept\n"
    assert app.notes == [f"{tmp_path / 'p.jsonl'}: not written (no frame processed)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "p.jsonl"]


def slow(cascade: Cascade, seconds: float) -> Callable[[list[np.ndarray]], list[list]]:
    def run(images: list[np.ndarray]) -> list[list]:
        time.sleep(seconds)
        return cascade(images)
    return run


def outputs_agree(json_path: Path, video_path: Path) -> int:
    """The JSON lines are frames 0..n-1 and the video has n frames; returns n."""
    frames = [r["frame"] for r in read_predictions(json_path)]
    assert frames == list(range(len(frames)))
    with av.open(str(video_path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(frames)
    return len(frames)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_sources_and_drains_what_they_read(tmp_path: Path, signum: int) -> None:
    video = write_video(tmp_path / "a.mp4", 300)
    sinks = [[JsonSink(tmp_path / "p.jsonl", str(video)), VideoSink(tmp_path / "v.mp4", 10)]]
    app = CascadeApp([open_source(str(video))], slow(Cascade(SquareDetector(), None), 0.01), sinks)
    threading.Timer(0.5, os.kill, (os.getpid(), signum)).start()
    with pytest.raises(Interrupted) as stop:
        app.run()
    assert stop.value.signum == signum and stop.value.lingering == []
    (report,) = stop.value.reports
    assert 0 < report.frames < 300
    assert outputs_agree(tmp_path / "p.jsonl", tmp_path / "v.mp4") == report.frames
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_a_second_signal_stops_every_stage_at_once(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", 300)
    sinks = [[JsonSink(tmp_path / "p.jsonl", str(video)), VideoSink(tmp_path / "v.mp4", 10)]]
    app = CascadeApp([open_source(str(video))], slow(Cascade(SquareDetector(), None), 0.2), sinks, queue_size=8)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(Interrupted):
        app.run()
    assert time.monotonic() - start < 0.6 + 8 * 0.2  # draining the 8 queued frames would take longer
    assert outputs_agree(tmp_path / "p.jsonl", tmp_path / "v.mp4") > 0
