"""Sinks: the JSON Lines format, interrupted writes, annotated video, MJPEG preview, FPS meter."""

from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from gesturekit.errors import GesturekitError
from gesturekit.pipeline.predictions import HandPrediction, JsonlWriter, prediction_record, read_predictions
from gesturekit.pipeline.sinks import JsonSink, PerfMeter, PreviewServer, VideoSink, draw_hands, output_path
from gesturekit.pipeline.sources import Frame

HANDS = [
    HandPrediction((1.23456, 2.0, 30.999, 40.5), 0.876543, "stop", 0.912345, 3),
    HandPrediction((5.0, 6.0, 9.0, 9.5), 0.5, None, None, None),
]
DETECTION_KEYS = ["bbox", "score", "gesture", "gesture_score", "track_id"]


def test_image_line_schema() -> None:
    record = prediction_record(HANDS, image="sub/a.jpg")
    assert list(record) == ["image", "detections"]
    assert record["image"] == "sub/a.jpg"
    first, second = record["detections"]
    assert list(first) == DETECTION_KEYS
    assert first == {"bbox": [1.23, 2.0, 31.0, 40.5], "score": 0.8765, "gesture": "stop",
                     "gesture_score": 0.9123, "track_id": 3}
    assert second == {"bbox": [5.0, 6.0, 9.0, 9.5], "score": 0.5, "gesture": None,
                      "gesture_score": None, "track_id": None}
    assert json.loads(json.dumps(record)) == record


def test_video_line_schema() -> None:
    record = prediction_record(HANDS[:1], source="rtsp://cam/1", frame=7, pts=0.2333333)
    assert list(record) == ["source", "frame", "pts", "detections"]
    assert (record["source"], record["frame"], record["pts"]) == ("rtsp://cam/1", 7, 0.233)
    assert prediction_record([], source="v.mp4", frame=0, pts=None)["detections"] == []
    with pytest.raises(ValueError):
        prediction_record([], image="a.jpg", source="v.mp4", frame=0)


def test_jsonl_is_complete_lines_when_interrupted_and_renamed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "out" / "preds.jsonl"
    writer = JsonlWriter(path)
    for i in range(3):
        writer.write(prediction_record(HANDS, source="v.mp4", frame=i, pts=i / 10))
    assert not path.exists()
    (partial,) = (tmp_path / "out").iterdir()  # what a killed run leaves: complete lines only
    assert [json.loads(line)["frame"] for line in partial.read_text().splitlines()] == [0, 1, 2]
    writer.close()
    writer.close()
    assert [r["frame"] for r in read_predictions(path)] == [0, 1, 2]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["preds.jsonl"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_read_predictions_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"image": "a.jpg", "detections": []}\n{"image": \n')
    with pytest.raises(GesturekitError, match=r"p\.jsonl:2: invalid JSON"):
        read_predictions(path)


def test_json_sink_writes_image_and_video_lines(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    sink = JsonSink(tmp_path / "p.jsonl", "clip.mp4")
    sink.write(Frame(0, 4, image, pts=0.4), HANDS, 10.0)
    sink.write(Frame(0, 0, image, name="x/y.png"), [], None)
    sink.close()
    video_line, image_line = read_predictions(tmp_path / "p.jsonl")
    assert video_line["source"] == "clip.mp4" and video_line["frame"] == 4 and video_line["pts"] == 0.4
    assert image_line == {"image": "x/y.png", "detections": []}


def test_output_paths_for_several_sources() -> None:
    assert output_path(Path("o/preds.jsonl"), 0, 1) == Path("o/preds.jsonl")
    assert output_path(Path("o/preds.jsonl"), 2, 3) == Path("o/preds.2.jsonl")
    assert output_path(Path("o/annotated.mp4"), 0, 2) == Path("o/annotated.0.mp4")


def test_draw_hands_marks_boxes_and_leaves_input_alone() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    drawn = draw_hands(image, HANDS, fps=12.5)
    assert image.max() == 0 and drawn.shape == image.shape and drawn.dtype == np.uint8
    assert drawn[20, 1].any() and drawn[20, 30:32].any()  # left and right edges of the first box
    assert not drawn[50, 60].any()


def test_draw_hands_clips_boxes_and_labels_at_the_frame_border() -> None:
    image = np.zeros((40, 50, 3), np.uint8)
    hand = HandPrediction(bbox=(-10.0, -10.0, 80.0, 90.0), score=0.5, gesture="fist", gesture_score=0.9, track_id=2)
    drawn = draw_hands(image, [hand])
    assert drawn[20, 0].any() and drawn[20, 49].any() and drawn[39, 25].any()  # left, right and bottom edges
    assert not drawn[20, 25].any()  # the inside stays


def test_video_sink_writes_a_playable_annotated_video(tmp_path: Path) -> None:
    path = tmp_path / "annotated.mp4"
    sink = VideoSink(path, fps=12)
    for i in range(6):
        sink.write(Frame(0, i, np.full((47, 63, 3), 40, np.uint8)), HANDS, 12.0)  # odd size: padded
    assert not path.exists()
    sink.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == pytest.approx(12)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]


def test_video_sink_without_frames_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"an earlier video")
    assert VideoSink(tmp_path / "v.mp4").close() == f"{tmp_path / 'v.mp4'}: not written (no frame processed)"
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"] and (tmp_path / "v.mp4").read_bytes() == b"an earlier video"


def test_an_incomplete_run_keeps_its_video_beside_the_old_one(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"an earlier video")
    sink = VideoSink(tmp_path / "v.mp4", fps=10)
    for i in range(4):
        sink.write(Frame(0, i, np.full((32, 48, 3), 40, np.uint8)), HANDS, None)
    note = sink.close(complete=False)
    assert note == f"{tmp_path / 'v.mp4'}: left unchanged; partial results in {tmp_path / 'v.partial.mp4'}"
    assert (tmp_path / "v.mp4").read_bytes() == b"an earlier video"
    with av.open(str(tmp_path / "v.partial.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4


def test_an_encoder_error_reaches_the_writer_and_keeps_the_partial_video(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "v.mp4", fps=10)
    sink.write(Frame(0, 0, np.full((32, 48, 3), 40, np.uint8)), [], None)
    sink.write(Frame(0, 1, np.zeros((32, 48), np.uint8)), [], None)  # not RGB: drawing fails in the encoder thread
    with pytest.raises(ValueError, match="ndim"):  # a later write raises it: the queue holds 8 frames
        for i in range(2, 50):
            sink.write(Frame(0, i, np.full((32, 48, 3), 40, np.uint8)), [], None)
    with pytest.raises(GesturekitError, match=r"ndim.*; partial video in .*v\.partial\.mp4$"):
        sink.close()
    assert not (tmp_path / "v.mp4").exists()
    with av.open(str(tmp_path / "v.partial.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 1


KILLED_WRITER = """
import os, signal, sys, time
from pathlib import Path
import numpy as np
from gesturekit.pipeline.sinks import VideoSink
from gesturekit.pipeline.sources import Frame
sink = VideoSink(Path(sys.argv[1]), fps=10)
for i in range(45):
    sink.write(Frame(0, i, np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)), [], None)
time.sleep(1.0)  # the encoder thread catches up
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_still_leaves_a_playable_video(tmp_path: Path) -> None:
    """Fragmented MP4: every finished second is playable without the end the killed run never wrote."""
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "v.mp4")], timeout=120)
    assert result.returncode == -signal.SIGKILL
    (staged,) = tmp_path.glob(".v.*.partial.mp4")
    with av.open(str(staged)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert 30 <= len(frames) <= 45 and frames[0].shape == (48, 64, 3)


def test_preview_serves_mjpeg_on_localhost() -> None:
    server = PreviewServer(0, num_sources=2)
    try:
        server.write(Frame(1, 0, np.full((24, 32, 3), 128, np.uint8)), HANDS[:1], 5.0)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/1.mjpg")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
        head = response.read(200)
        assert head.startswith(b"--frame\r\nContent-Type: image/jpeg\r\n") and b"\xff\xd8" in head
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/7.mjpg")
        assert conn.getresponse().status == 404
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/")
        assert b'src="/0.mjpg"' in conn.getresponse().read()
        conn.close()
    finally:
        server.close()


def test_perf_meter_reports_interval_and_average_fps() -> None:
    now = [0.0]
    lines: list[str] = []
    meter = PerfMeter(["a", "b"], interval_s=2.0, emit=lines.append, clock=lambda: now[0])
    for i in range(1, 21):
        now[0] = i / 10
        if i % 2 == 0:
            meter.tick(1)
        meter.tick(0)
    # The report fires on source 1's tick at t = 2 s, before source 0's 20th frame.
    assert lines == ["**PERF: 0: 9.50 (9.50)\t1: 5.00 (5.00)"]
    assert meter.fps(0) == pytest.approx(9.5)
    assert meter.average(1) == pytest.approx(10 / 2.0)
