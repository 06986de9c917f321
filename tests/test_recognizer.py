"""The public API (``gesturekit.GestureRecognizer``) on real frames: HaGRID photos and the portrait video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gesturekit import GestureRecognizer, Result
from gesturekit.boxes import box_iou
from gesturekit.errors import GesturekitError

GESTURENET = {"like": "thumbs_up", "fist": "fist", "palm": "stop", "stop": "stop", "ok": "ok", "peace": "two"}
"""HaGRID gestures -> the shipped classifier's classes (../shared/data/README.md)."""


@pytest.fixture(scope="module")
def recognizer() -> GestureRecognizer:
    return GestureRecognizer()


def hagrid_test_frames(data_root: Path, per_gesture: int = 2) -> list[tuple[Path, str, np.ndarray]]:
    """The first test frames of each mapped gesture: path, expected class, the gesturing hand's box in pixels."""
    out = []
    root = data_root / "hagrid"
    for gesture, expected in GESTURENET.items():
        labels = json.loads((root / "annotations" / "test" / f"{gesture}.json").read_text())
        for image_id, label in list(labels.items())[:per_gesture]:
            path = root / "frames" / f"{image_id}.jpg"
            with Image.open(path) as img:
                width, height = img.size
            x, y, w, h = label["bboxes"][label["labels"].index(gesture)]
            out.append((path, expected, np.array([x * width, y * height, (x + w) * width, (y + h) * height])))
    return out


def test_recognize_finds_the_gesture_on_hagrid_photos(recognizer, data_root) -> None:
    frames = hagrid_test_frames(data_root)
    right = 0
    for path, expected, box in frames:
        result = recognizer.recognize(path)
        assert isinstance(result, Result) and result.frame.shape[2] == 3
        matched = [h for h in result.hands if box_iou(box[None], np.array([h.bbox]))[0, 0] > 0.5]
        right += bool(matched) and matched[0].gesture == expected
        assert all(h.track_id is None for h in result.hands)  # a still image is never tracked
    assert right >= len(frames) - 2  # 11 of 12 when written (one 'like' hand is missed)


def test_path_pil_and_array_inputs_give_the_same_hands(recognizer, data_root) -> None:
    path = hagrid_test_frames(data_root, 1)[0][0]
    by_path = recognizer.recognize(path)
    with Image.open(path) as img:
        by_pil = recognizer.recognize(img)
        by_array = recognizer.recognize(np.asarray(img.convert("RGB")))
    assert by_path.hands and by_path.hands == by_pil.hands == by_array.hands
    assert by_path.to_dict()["image"] == str(path)
    assert set(by_array.to_dict()) == {"detections"}
    assert by_array.to_dict()["detections"] == by_path.to_dict()["detections"]


def test_plot_draws_on_a_copy(recognizer, data_root) -> None:
    result = recognizer.recognize(hagrid_test_frames(data_root, 1)[0][0])
    before = result.frame.copy()
    drawn = result.plot()
    assert drawn.shape == result.frame.shape and drawn.dtype == np.uint8
    assert np.array_equal(result.frame, before) and not np.array_equal(drawn, before)
    x1, y1, x2, y2 = (int(v) for v in result.hands[0].bbox)
    assert not np.array_equal(drawn[y1:y2 + 1, x1], before[y1:y2 + 1, x1])  # the box's left edge


def test_stream_tracks_the_video_and_matches_infer(recognizer, data_root, tmp_path) -> None:
    from gesturekit.cli.main import app
    from typer.testing import CliRunner

    video = data_root / "video" / "asl_hand.25fps.mp4"
    results = list(recognizer.stream(video, max_frames=20))
    assert [r.index for r in results] == list(range(20))
    assert all(b.pts > a.pts for a, b in zip(results, results[1:]))
    assert all(r.frame.shape == (1080, 620, 3) for r in results)
    assert sum(len(r.hands) for r in results) >= 18 and all(h.track_id is not None for r in results for h in r.hands)
    out = tmp_path / "asl.jsonl"
    run = CliRunner().invoke(app, ["infer", str(video), "--max-frames", "20", "--out-json", str(out), "-q"])
    assert run.exit_code == 0, run.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == [r.to_dict() for r in results]


def test_leaving_a_stream_early_stops_it(recognizer, data_root) -> None:
    for result in recognizer.stream(data_root / "video" / "asl_hand.25fps.mp4"):
        break
    assert result.index == 0
    assert len(list(recognizer.stream(data_root / "video" / "asl_hand.25fps.mp4", max_frames=3))) == 3


def test_bad_inputs_are_one_line_errors(recognizer, tmp_path, data_root) -> None:
    with pytest.raises(GesturekitError, match="uint8 RGB"):
        recognizer.recognize(np.zeros((8, 8), np.float32))
    with pytest.raises(GesturekitError, match="no such file"):
        recognizer.recognize(tmp_path / "missing.jpg")
    with pytest.raises(GesturekitError, match="not one image"):
        recognizer.recognize(data_root / "video" / "asl_hand.25fps.mp4")
    with pytest.raises(GesturekitError, match="unknown option"):
        GestureRecognizer(refine_boxes="small")
    with pytest.raises(GesturekitError, match="primary.score_threshold"):
        GestureRecognizer(score_threshold=2.0)


def test_the_shipped_sample_runs_without_the_data_folder(tmp_path) -> None:
    import hashlib

    from gesturekit.cli.main import app
    from gesturekit.samples import SAMPLE_VIDEO
    from typer.testing import CliRunner

    digest = hashlib.sha256(SAMPLE_VIDEO.read_bytes()).hexdigest()
    assert digest == "57c10fb1eb76639edf43e9675213dcc495c51851e32a3592cacaa9437be4f37e"  # the NOTICE's file
    assert "Apache License, Version 2.0" in (SAMPLE_VIDEO.parent / "NOTICE").read_text()
    out = tmp_path / "sample.jsonl"
    run = CliRunner().invoke(app, ["infer", "--sample", "--max-frames", "4", "--out-json", str(out), "-q"])
    assert run.exit_code == 0, run.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2, 3] and lines[0]["source"] == str(SAMPLE_VIDEO)
    assert all(line["detections"] for line in lines)
