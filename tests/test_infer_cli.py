"""``gesturekit infer`` end to end on generated videos, with fake models injected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from gesturekit.cli.infer import infer
from gesturekit.config.app import AppConfig
from gesturekit.errors import GesturekitError
from gesturekit.pipeline.app import build_cascade
from gesturekit.pipeline.cascade import Cascade
from gesturekit.pipeline.gpu_cascade import GpuCascade
from gesturekit.pipeline.predictions import read_predictions
from gesturekit.runtime import loading
from test_pipeline_fakes import BrightnessClassifier, SquareDetector, write_video


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch) -> tuple[typer.Typer, list[dict[str, Any]]]:
    """A Typer app with only ``infer``, whose model loaders return fakes and record their calls."""
    calls: list[dict[str, Any]] = []

    def load_detector(name: str, **kwargs: Any) -> SquareDetector:
        calls.append({"detector": name, **kwargs})
        return SquareDetector()

    def load_classifier(name: str, **kwargs: Any) -> BrightnessClassifier:
        calls.append({"classifier": name, **kwargs})
        return BrightnessClassifier()

    def batched_cascade(config: AppConfig, device: str) -> Cascade:
        calls.append({"batched": device, "half": config.primary.half})
        return build_cascade(config, SquareDetector(), BrightnessClassifier())

    monkeypatch.setattr(loading, "load_detector", load_detector)
    monkeypatch.setattr(loading, "load_classifier", load_classifier)
    monkeypatch.setattr(GpuCascade, "from_config", batched_cascade)
    app = typer.Typer()
    app.command("infer")(infer)
    app.command("noop")(lambda: None)  # keep ``infer`` a sub-command, as in the real CLI
    return app, calls


def test_infer_video_writes_jsonl_and_annotated_video(tmp_path: Path, cli: tuple) -> None:
    app, calls = cli
    video = write_video(tmp_path / "clip.mp4", 10, 64, 48, fps=10)
    result = CliRunner().invoke(app, [
        "infer", str(video), "--out-json", str(tmp_path / "preds.jsonl"),
        "--out-video", str(tmp_path / "annotated.mp4"), "--min-crop", "4", "--threads", "2",
    ])
    assert result.exit_code == 0, result.output
    assert f"{video}: 10 frames" in result.output
    assert calls == [
        {"detector": "hand-detector-pruned-int8", "backend": "onnxruntime", "device": "cpu", "threads": 2,
         "half": False, "score_threshold": 0.2, "verifier": "hand-verifier", "candidate_threshold": 0.1,
         "trust_threshold": 0.6, "verifier_weight": 0.3, "refine_boxes": "doubtful"},
        {"classifier": "gesture-classifier-int8", "backend": "onnxruntime", "device": "cpu", "threads": 1,
         "half": False},
    ]  # the CPU runtime's defaults, pruned INT8 detector + verifier + INT8 classifier; the classifier keeps its
    # threads; the detector keeps hands down to secondary.confirm_threshold, 0.2, for the classifier to confirm
    lines = read_predictions(tmp_path / "preds.jsonl")
    assert [r["frame"] for r in lines] == list(range(10))
    first = lines[0]
    assert set(first) == {"source", "frame", "pts", "detections"} and first["pts"] == 0.0
    (det,) = first["detections"]
    assert det["gesture"] == "stop" and det["track_id"] == 0 and det["gesture_score"] == 0.8
    with av.open(str(tmp_path / "annotated.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 10 and (frames[0].width, frames[0].height) == (64, 48)


def test_infer_options_and_config_override(tmp_path: Path, cli: tuple) -> None:
    app, calls = cli
    a, b = write_video(tmp_path / "a.mp4", 6), write_video(tmp_path / "b.mp4", 9)
    config = tmp_path / "app.yaml"
    config.write_text(f"sources: [{a}]\nprimary:\n  detector: my-det.onnx\n  score_threshold: 0.25\n"
                      "  candidate_threshold: 0.15\n  verifier_weight: 0.5\nsecondary:\n  min_crop_size: 200\n")
    result = CliRunner().invoke(app, [
        "infer", str(a), str(b), "--config", str(config), "--no-classifier", "--backend", "torch",
        "--verifier", "my-verifier.pt", "--refine-boxes", "all",
        "--out-json", str(tmp_path / "out" / "p.jsonl"), "--max-frames", "5", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert calls == [{"detector": "my-det.onnx", "backend": "torch", "device": "cpu", "threads": None,
                      "half": False, "score_threshold": 0.25, "verifier": "my-verifier.pt", "candidate_threshold": 0.15,
                      "trust_threshold": 0.6, "verifier_weight": 0.5, "refine_boxes": "all"}]  # no classifier: nothing to confirm
    for i in range(2):
        lines = read_predictions(tmp_path / "out" / f"p.{i}.jsonl")
        assert [r["frame"] for r in lines] == list(range(5))
        assert all(d["gesture"] is None for r in lines for d in r["detections"])


@pytest.mark.parametrize(("workers", "threads"), [(None, 1), (1, None)])
def test_onnxruntime_detector_calls_are_single_threaded_when_several_run_at_once(
        tmp_path: Path, cli: tuple, workers: int | None, threads: int | None) -> None:
    app, calls = cli
    video = write_video(tmp_path / "clip.mp4", 3, 64, 48, fps=10)
    config = tmp_path / "app.yaml"
    config.write_text("primary: {}\n" if workers is None else f"primary:\n  workers: {workers}\n")
    result = CliRunner().invoke(app, ["infer", str(video), "-c", str(config), "--quiet",
                                      "--out-json", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert calls[0]["threads"] == threads  # default 2 workers: 1 thread each; 1 worker: ONNX Runtime's default


@pytest.mark.parametrize("flags", [["--backend", "torch"], ["--device", "cuda", "--backend", "onnxruntime"]])
def test_infer_off_the_cpu_runtime_defaults_to_the_fp32_models(tmp_path: Path, cli: tuple, flags: list[str]) -> None:
    app, calls = cli
    video = write_video(tmp_path / "clip.mp4", 3, 64, 48, fps=10)
    result = CliRunner().invoke(app, ["infer", str(video), *flags, "--quiet", "--out-json", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert [c.get("detector", c.get("classifier")) for c in calls] == ["hand-detector", "gesture-classifier"]
    assert calls[0]["verifier"] == "hand-verifier"


@pytest.mark.parametrize(("flags", "half"), [
    (["--device", "cuda"], True),
    (["--backend", "torch", "--device", "cuda", "--precision", "fp32"], False),
])
def test_infer_on_cuda_runs_the_batched_cascade_in_the_precision_asked(tmp_path: Path, cli: tuple, flags: list[str],
                                                                        half: bool) -> None:
    app, calls = cli
    video = write_video(tmp_path / "clip.mp4", 3, 64, 48, fps=10)
    result = CliRunner().invoke(app, ["infer", str(video), *flags, "--quiet", "--out-json", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert calls == [{"batched": "cuda", "half": half}]
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3


def test_infer_missing_source_fails_before_loading_models(tmp_path: Path, cli: tuple) -> None:
    app, calls = cli
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "nope.mp4")])
    assert isinstance(result.exception, GesturekitError)
    assert str(result.exception) == f"{tmp_path / 'nope.mp4'}: no such file or folder"
    assert calls == []


def test_infer_without_sources_says_so(cli: tuple) -> None:
    app, _ = cli
    result = CliRunner().invoke(app, ["infer"])
    assert isinstance(result.exception, GesturekitError)
    assert str(result.exception).startswith("no source: ")


def test_infer_annotated_video_needs_a_video_source(tmp_path: Path, cli: tuple) -> None:
    app, _ = cli
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / "a.png")
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "imgs"), "--out-video", str(tmp_path / "v.mp4")])
    assert isinstance(result.exception, GesturekitError)
    assert str(result.exception) == f"{tmp_path / 'imgs'}: an annotated video needs a video source, not images"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_infer_bad_config_key_names_file_and_key(tmp_path: Path, cli: tuple) -> None:
    app, _ = cli
    config = tmp_path / "app.yaml"
    config.write_text("tracker:\n  iou: 0.5\n")
    result = CliRunner().invoke(app, ["infer", "x.mp4", "--config", str(config)])
    assert isinstance(result.exception, GesturekitError)
    assert str(result.exception) == f"{config}: tracker.iou: unknown key"


def test_infer_no_verify_loads_no_verifier(tmp_path: Path, cli: tuple) -> None:
    app, calls = cli
    video = write_video(tmp_path / "clip.mp4", 3, 64, 48, fps=10)
    result = CliRunner().invoke(app, ["infer", str(video), "--no-verify", "--quiet",
                                      "--out-json", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert calls[0]["verifier"] is None and calls[0]["detector"] == "hand-detector-pruned-int8"


def test_a_folder_whose_every_image_is_corrupt_fails_naming_it(tmp_path: Path, cli: tuple) -> None:
    """Nothing decoded is no success: the run ends with one error naming the source (exit 1 in the CLI) and
    writes no output; one readable image is enough to succeed."""
    app, _ = cli
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["infer", str(folder), "--out-json", str(tmp_path / "p.jsonl")])
    assert isinstance(result.exception, GesturekitError), result.output
    assert str(result.exception) == f"no frame could be decoded from {folder} (2 corrupt)"
    assert not (tmp_path / "p.jsonl").exists()
    Image.new("RGB", (64, 48), (200, 200, 200)).save(folder / "c.jpg")
    result = CliRunner().invoke(app, ["infer", str(folder), "--out-json", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert "1 frames" in result.output and "2 corrupt skipped" in result.output
