"""The app as a user runs it: ``gesturekit infer`` with the shipped models on the two real clips.

Every frame's boxes are compared with the clip's own annotations: ``asl_hand.25fps.mp4`` has 21 hand
keypoints per frame, ``nvgesture_sk_color.avi`` a hand box per frame. Keypoints sit on the joints, inside
the hand, so the hand's box is their extent grown by ``KEYPOINT_PAD`` of its width and height on every side
(fingertip pads, knuckles, the wrist's width).
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gesturekit.boxes import box_iou
from gesturekit.models.zoo import zoo_metadata

KEYPOINT_PAD = 0.15
DETECTION_KEYS = {"bbox", "score", "gesture", "gesture_score", "track_id"}


def run_infer(*args: str) -> subprocess.CompletedProcess:
    """The installed command, in a fresh process, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "gesturekit.cli.main", "infer", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def video_info(path: Path) -> tuple[int, int, int, Fraction]:
    """Decoded frame count, width, height and frame rate of a video file (PyAV)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.codec_context.width, stream.codec_context.height, stream.average_rate


def assert_schema(lines: list[dict], source: Path, frames: int, width: int, height: int, fps: float,
                  gestures: set[str]) -> None:
    """The documented prediction format: one line per frame, in order, boxes in pixels of the frame."""
    assert len(lines) == frames
    for n, line in enumerate(lines):
        assert set(line) == {"source", "frame", "pts", "detections"}
        assert line["source"] == str(source) and line["frame"] == n
        assert line["pts"] == pytest.approx(n / fps, abs=0.002)
        for det in line["detections"]:
            assert set(det) == DETECTION_KEYS
            x1, y1, x2, y2 = det["bbox"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, det
            assert 0 <= det["score"] <= 1 and isinstance(det["track_id"], int)
            assert det["gesture"] is None or (det["gesture"] in gestures and 0 <= det["gesture_score"] <= 1)


def best_ious(lines: list[dict], truth: np.ndarray) -> np.ndarray:
    """Per frame, the IoU of the detection that best matches the frame's hand box (0 without detections)."""
    return np.array([box_iou(np.array([d["bbox"] for d in line["detections"]]), truth[i:i + 1]).max(initial=0.0)
                     for i, line in enumerate(lines)])


@pytest.fixture(scope="module")
def gestures() -> set[str]:
    return set(zoo_metadata("gesture-classifier")["classes"])


def test_infer_on_the_asl_clip_finds_the_keypoint_hand_in_every_frame(data_root: Path, tmp_path: Path,
                                                                     gestures: set[str]) -> None:
    video = data_root / "video" / "asl_hand.25fps.mp4"
    points = np.array(json.loads((data_root / "video" / "asl_hand.full.json").read_text()))[:, :, :2]
    low, high = points.min(axis=1), points.max(axis=1)
    pad = (high - low) * KEYPOINT_PAD
    truth = np.concatenate([low - pad, high + pad], axis=1)
    frames, width, height, fps = video_info(video)
    assert (frames, width, height, len(truth)) == (325, 620, 1080, 325)

    run_infer(str(video), "--out-json", str(tmp_path / "asl.jsonl"), "--threads", "2")
    lines = read_lines(tmp_path / "asl.jsonl")
    assert_schema(lines, video, frames, width, height, float(fps), gestures)
    assert all(len(line["detections"]) == 1 for line in lines), "one hand in the clip, one box per frame"
    ious = best_ious(lines, truth)
    assert ious.min() >= 0.5 and np.median(ious) >= 0.75, (ious.min(), np.median(ious))
    inside = [np.mean([(x1 - 2 <= x <= x2 + 2) and (y1 - 2 <= y <= y2 + 2) for x, y in frame_points])
              for frame_points, (x1, y1, x2, y2) in zip(points, (line["detections"][0]["bbox"] for line in lines))]
    assert min(inside) >= 19 / 21, "the box holds all but at most two of the 21 keypoints"
    assert {line["detections"][0]["track_id"] for line in lines} == {0}, "one hand, one track over 13 s"
    assert all(line["detections"][0]["gesture"] is not None for line in lines[25:])  # voted after a second


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_infer_on_the_nvgesture_clip_matches_its_boxes(data_root: Path, tmp_path: Path, gestures: set[str],
                                                       backend: str) -> None:
    """The CPU app (INT8 models, verifier) and the torch backend (FP32 models) on the annotated clip; the annotated
    video has every frame at the clip's size."""
    video = data_root / "video" / "nvgesture_sk_color.avi"
    annotations = json.loads((data_root / "video" / "nvgesture_bboxes.json").read_text())[""]
    truth = np.array([frame[0]["bbox"]["__ndarray__"][:4] for frame in annotations])
    frames, width, height, fps = video_info(video)
    assert (frames, width, height, len(truth)) == (20, 320, 240, 20)

    out_json, out_video = tmp_path / "nv.jsonl", tmp_path / "nv.mp4"
    result = run_infer(str(video), "--out-json", str(out_json), "--out-video", str(out_video), "--backend", backend,
                       "--threads", "2")
    assert f"{video}: 20 frames" in result.stdout + result.stderr
    lines = read_lines(out_json)
    assert_schema(lines, video, frames, width, height, float(fps), gestures)
    ious = best_ious(lines, truth)
    assert (ious >= 0.5).sum() >= 17 and ious.mean() >= 0.55, ious.round(2).tolist()
    hand_ids = [max(line["detections"], key=lambda d: box_iou(np.array([d["bbox"]]), truth[i:i + 1])[0, 0])["track_id"]
                for i, line in enumerate(lines) if line["detections"]]
    switches = sum(a != b for a, b in zip(hand_ids, hand_ids[1:]))
    assert switches <= 2, f"the hand's track id: {hand_ids}"  # a second box on the moving hand can take it over
    assert video_info(out_video)[:3] == (20, 320, 240)
