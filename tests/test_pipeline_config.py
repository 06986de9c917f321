"""The app config: the shipped default, strict keys and one-line errors."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from gesturekit.config.app import AppConfig, load_app_config
from gesturekit.errors import GesturekitError


def test_shipped_default_matches_the_model_defaults() -> None:
    shipped = Path(str(files("gesturekit") / "specs" / "app.yaml"))
    assert load_app_config(shipped) == AppConfig() == load_app_config(None)


def test_full_config_parses(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        "sources: [a.mp4, rtsp://cam/1, '0']\n"
        "streammux: {max_frames: 100, reconnect_attempts: 2}\n"
        "primary: {detector: det.onnx, backend: torch, device: cuda, score_threshold: 0.25, threads: 2}\n"
        "secondary: {enabled: false, margin: 8, min_crop_size: 48}\n"
        "tracker: {method: greedy, iou_threshold: 0.5, max_age: 3, vote_window: 7}\n"
        "sinks: {json: out/p.jsonl, video: out/v.mp4, preview_port: 8090, perf_interval_s: 0}\n"
    )
    cfg = load_app_config(path)
    assert cfg.sources == ["a.mp4", "rtsp://cam/1", "0"]
    assert cfg.sinks.json_path == Path("out/p.jsonl") and cfg.sinks.preview_port == 8090
    assert cfg.secondary.margin == 8 and not cfg.secondary.enabled
    assert cfg.tracker.method == "greedy" and cfg.primary.device == "cuda"


@pytest.mark.parametrize(("primary", "half"), [
    ({}, False),
    ({"backend": "torch"}, False),
    ({"backend": "torch", "device": "cuda"}, True),
    ({"backend": "torch", "device": "cuda", "precision": "fp32"}, False),
    ({"backend": "onnxruntime", "device": "cuda"}, False),
    ({"backend": "torch", "device": "cuda", "precision": "fp16"}, True),
])
def test_precision_defaults_to_fp16_for_torch_on_cuda(primary: dict, half: bool) -> None:
    assert AppConfig.model_validate({"primary": primary}).primary.half is half


@pytest.mark.parametrize(("primary", "backend", "batched"), [
    ({}, "onnxruntime", False),
    ({"device": "cuda"}, "torch", True),
    ({"device": "cuda", "backend": "onnxruntime"}, "onnxruntime", False),
    ({"device": "cuda", "batched": False}, "torch", False),
    ({"backend": "torch"}, "torch", False),
    ({"backend": "torch", "batched": True}, "torch", True),
])
def test_cuda_runs_the_batched_torch_cascade_unless_told_otherwise(primary: dict, backend: str, batched: bool) -> None:
    cfg = AppConfig.model_validate({"primary": primary}).primary
    assert (cfg.backend, cfg.runs_batched) == (backend, batched)


def test_a_device_given_as_an_option_picks_its_default_backend() -> None:
    from gesturekit.pipeline.recognizer import configure

    assert configure(AppConfig(), primary__device="cuda").primary.backend == "torch"
    assert configure(load_app_config(Path(str(files("gesturekit") / "specs" / "app.yaml"))), primary__device="cuda").primary.backend == "torch"
    told = AppConfig.model_validate({"primary": {"backend": "onnxruntime"}})
    assert configure(told, primary__device="cuda").primary.backend == "onnxruntime"


@pytest.mark.parametrize(("text", "message"), [
    ("primary:\n  backend: onnxruntime\n  batched: true\n", "primary: batched needs the torch backend (got onnxruntime)"),
    ("primary:\n  backend: tensorrt\n", "primary.backend: Input should be 'onnxruntime', 'torch' or 'triton'"),
    ("sinks:\n  preview_port: 70000\n", "sinks.preview_port: Input should be less than or equal to 65535"),
    ("secondary:\n  min_crop_size: 0\n", "secondary.min_crop_size: Input should be greater than 0"),
    ("streamux: {}\n", "streamux: unknown key"),
    ("primary:\n  precision: int8\n", "primary.precision: Input should be 'fp32' or 'fp16'"),
    ("primary:\n  backend: torch\n  precision: fp16\n",
     "primary: precision fp16 needs the torch backend on cuda (got torch on cpu; an ONNX file carries its own precision)"),
])
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(text)
    with pytest.raises(GesturekitError) as err:
        load_app_config(path)
    assert str(err.value) == f"{path}: {message}"


def test_classifier_gets_its_own_onnxruntime_threads() -> None:
    from gesturekit.pipeline.app import load_models

    def threads(model) -> int:
        return model.backend.session.get_session_options().intra_op_num_threads

    detector, classifier = load_models(AppConfig.model_validate({"primary": {"threads": 2}}))
    assert threads(detector) == 2 and threads(classifier) == 1  # the default: one classifier thread
    detector, classifier = load_models(AppConfig.model_validate({"secondary": {"threads": 2}}))
    assert threads(classifier) == 2
