"""The model repository on a real Triton Inference Server (the tritonserver binary of nvidia-pytriton): one
server for the module, on free ports of 127.0.0.1; its answers against the local cascade on real frames, and
each kind of malformed request refused with a 4xx and one line while the server keeps serving."""

from __future__ import annotations

import io
import json
import re
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpc
import tritonclient.http as http
from conftest import free_port
from PIL import Image
from tritonclient.utils import InferenceServerException

from gesturekit.export.triton import RepositoryOptions, write_repository
from gesturekit.images import read_rgb
from gesturekit.models.zoo import zoo_path
from gesturekit.pipeline.recognizer import GestureRecognizer
from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend
from gesturekit.serve.server import Ports, TritonServer

MODELS = {"detector": zoo_path("hand-detector-pruned-int8") / "model.onnx",
          "verifier": zoo_path("hand-verifier") / "model.onnx",
          "classifier": zoo_path("gesture-classifier-int8") / "model.onnx"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> TritonServer:
    work = tmp_path_factory.mktemp("triton")
    repo = write_repository(work / "repo", MODELS["detector"], MODELS["classifier"], MODELS["verifier"],
                            RepositoryOptions(model_backend="python", threads=1))
    ports = Ports(http=free_port(), grpc=free_port(), metrics=free_port())
    triton = TritonServer(repo, ports, work)
    triton.start()
    yield triton
    assert triton.stop() == 0
    assert triton.process is not None and triton.process.poll() == 0


@pytest.fixture(scope="module")
def frames(data_root: Path) -> list[Path]:
    return sorted((data_root / "hagrid" / "frames").glob("*.jpg"))[:4]


def http_client(server: TritonServer) -> http.InferenceServerClient:
    return http.InferenceServerClient(f"127.0.0.1:{server.ports.http}")


def image_input(rows: list[bytes], module=http) -> object:
    tensor = module.InferInput("image", [len(rows), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[r] for r in rows], dtype=np.object_).reshape(len(rows), 1))
    return tensor


def served(server: TritonServer, rows: list[bytes]) -> list[list[dict]]:
    client = http_client(server)
    try:
        result = client.infer("gesture_cascade", [image_input(rows)])
    finally:
        client.close()
    return [json.loads(row[0]) for row in result.as_numpy("detections")]


def assert_same_hands(got: list[dict], want: list[dict]) -> None:
    assert [h["gesture"] for h in got] == [h["gesture"] for h in want]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.05)
        assert a["score"] == pytest.approx(b["score"], abs=2e-4)
        assert a["gesture_score"] == pytest.approx(b["gesture_score"], abs=2e-4)


def test_health_metrics_and_models(server: TritonServer) -> None:
    urls = server.ports.urls()
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/gesture_cascade/ready"):
        with urllib.request.urlopen(urls["http"] + path, timeout=5) as response:
            assert response.status == 200
    client = http_client(server)
    try:
        names = sorted(m["name"] for m in client.get_model_repository_index() if m.get("state") == "READY")
        config = client.get_model_config("hand_detector")
    finally:
        client.close()
    assert names == ["gesture_cascade", "gesture_classifier", "hand_detector", "hand_verifier"]
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert json.loads(config["parameters"]["gesturekit"]["string_value"])["task"] == "detection"
    with urllib.request.urlopen(urls["metrics"], timeout=5) as response:
        assert 'nv_inference_request_success{model="gesture_cascade"' in response.read().decode()


def test_cascade_equals_the_local_recognizer_over_http_and_grpc(server: TritonServer, frames: list[Path]) -> None:
    local = GestureRecognizer(detector=MODELS["detector"], verifier=MODELS["verifier"],
                              classifier=MODELS["classifier"], track=False)
    want = [local.recognize(read_rgb(f)).to_dict()["detections"] for f in frames]
    assert any(hands for hands in want)
    rows = [f.read_bytes() for f in frames]
    for got, expected in zip([served(server, [row])[0] for row in rows], want):  # one row per request
        assert_same_hands(got, expected)
    for got, expected in zip(served(server, rows), want):  # one request of four rows
        assert_same_hands(got, expected)
    client = grpc.InferenceServerClient(f"127.0.0.1:{server.ports.grpc}")
    try:
        result = client.infer("gesture_cascade", [image_input(rows[:2], grpc)])
    finally:
        client.close()
    for row, expected in zip(result.as_numpy("detections"), want):
        assert_same_hands(json.loads(row[0]), expected)


def test_single_models_equal_onnxruntime(server: TritonServer, frames: list[Path]) -> None:
    crop = read_rgb(frames[0])[200:360, 300:460]  # a 160x160 region of the frame
    batch = ((crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0) - 0.5) / 0.25
    tensor = http.InferInput("images", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    client = http_client(server)
    try:
        probs = client.infer("gesture_classifier", [tensor]).as_numpy("probs")
    finally:
        client.close()
    np.testing.assert_allclose(probs, OnnxRuntimeBackend(MODELS["classifier"], threads=1).infer(batch)[0], atol=1e-5)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares a ``width`` x ``height`` RGB canvas over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + \
        chunk(b"IEND", b"")


def bad_requests(frame: Path) -> dict[str, tuple[list[object], str]]:
    jpeg = frame.read_bytes()
    wrong_name = http.InferInput("picture", [1, 1], "BYTES")
    wrong_name.set_data_from_numpy(np.array([[jpeg]], dtype=np.object_))
    wrong_dtype = http.InferInput("image", [1, 1], "FP32")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 1), np.float32))
    wrong_shape = http.InferInput("image", [1, 2], "BYTES")
    wrong_shape.set_data_from_numpy(np.array([[jpeg, jpeg]], dtype=np.object_))
    empty = http.InferInput("image", [0, 1], "BYTES")
    empty.set_data_from_numpy(np.zeros((0, 1), dtype=np.object_))
    return {
        "wrong input name": ([wrong_name], "picture"),
        "wrong dtype": ([wrong_dtype], "FP32"),
        "wrong shape": ([wrong_shape], "shape"),
        "not an image": ([image_input([b"hello, this is not an image"])], "unreadable image"),
        "truncated jpeg": ([image_input([jpeg[: len(jpeg) // 2]])], "unreadable image"),
        "50 MB body": ([image_input([jpeg + bytes(50 << 20)])], "image limit"),
        "20000x20000 png": ([image_input([png_header(20000, 20000)])], "pixel limit"),
        "empty batch": ([empty], "got 0"),
    }


def test_malformed_requests_get_a_4xx_and_one_line(server: TritonServer, frames: list[Path]) -> None:
    client = http_client(server)
    try:
        for case, (inputs, words) in bad_requests(frames[0]).items():
            with pytest.raises(InferenceServerException) as caught:
                client.infer("gesture_cascade", inputs)
            error = caught.value
            assert error.status() is not None and str(error.status()).startswith("4"), (case, error)
            assert words in error.message() and "\n" not in error.message().strip(), (case, error.message())
    finally:
        client.close()
    assert served(server, [frames[0].read_bytes()])[0], "the server still answers"


def test_mixed_batch_fails_only_the_bad_request(server: TritonServer, frames: list[Path]) -> None:
    client = http_client(server)
    try:
        good = client.async_infer("gesture_cascade", [image_input([frames[1].read_bytes()])])
        bad = client.async_infer("gesture_cascade", [image_input([b"\xff\xd8 not a jpeg"])])
        assert json.loads(good.get_result().as_numpy("detections")[0, 0]) is not None
        with pytest.raises(InferenceServerException, match="unreadable image"):
            bad.get_result()
    finally:
        client.close()


def test_png_and_grayscale_images(server: TritonServer, frames: list[Path]) -> None:
    image = Image.open(frames[2])
    buffers = []
    for mode, fmt in (("RGB", "PNG"), ("L", "JPEG")):
        buffer = io.BytesIO()
        image.convert(mode).save(buffer, format=fmt)
        buffers.append(buffer.getvalue())
    png, grey = served(server, buffers)
    local = GestureRecognizer(detector=MODELS["detector"], verifier=MODELS["verifier"],
                              classifier=MODELS["classifier"], track=False)
    assert_same_hands(png, local.recognize(read_rgb(frames[2])).to_dict()["detections"])
    assert isinstance(grey, list)


def test_triton_backend_equals_onnxruntime_on_real_frames(server: TritonServer, frames: list[Path]) -> None:
    from gesturekit.runtime.classifier import GestureClassifier
    from gesturekit.runtime.detector import HandDetector
    from gesturekit.runtime.triton_backend import TritonBackend, triton_backend

    images = [read_rgb(f) for f in frames]
    for url in (f"127.0.0.1:{server.ports.http}", f"grpc://127.0.0.1:{server.ports.grpc}"):
        remote = triton_backend("hand-detector-pruned-int8", url=url)  # a zoo name finds the served detector
        assert isinstance(remote, TritonBackend) and remote.model == "hand_detector"
        local = OnnxRuntimeBackend(MODELS["detector"], threads=1)
        assert remote.metadata == local.metadata
        got, want = HandDetector(remote)(images), HandDetector(local)(images)
        assert [len(d) for d in got] == [len(d) for d in want] and any(want)
        for a, b in zip(sum(got, []), sum(want, [])):
            np.testing.assert_allclose(a.bbox, b.bbox, atol=0.05)
            assert a.score == pytest.approx(b.score, abs=1e-4)
        crops = [image[y1:y2, x1:x2] for image, dets in zip(images, want)
                 for x1, y1, x2, y2 in (map(int, d.bbox) for d in dets)]
        remote = GestureClassifier(triton_backend("gesture_classifier", url=url))
        local = GestureClassifier(OnnxRuntimeBackend(MODELS["classifier"], threads=1))
        np.testing.assert_allclose(remote.probabilities(crops), local.probabilities(crops), atol=1e-5)


def test_triton_backend_errors_are_one_line(server: TritonServer) -> None:
    from gesturekit.errors import GesturekitError
    from gesturekit.runtime.triton_backend import triton_backend

    url = f"127.0.0.1:{server.ports.http}"
    with pytest.raises(GesturekitError, match="no-such-model: not served here .served: gesture_cascade, "):
        triton_backend("no-such-model", url=url)
    with pytest.raises(GesturekitError, match="no gesturekit metadata"):
        triton_backend("gesture_cascade", url=url)
    with pytest.raises(GesturekitError, match="cannot reach the server"):
        triton_backend("hand_detector", url=f"127.0.0.1:{free_port()}")
    with pytest.raises(GesturekitError, match="needs the server's --url"):
        triton_backend("hand_detector")


def served_count(server: TritonServer, model: str) -> float:
    """Images the server's ``model`` has run (Triton's ``nv_inference_count``)."""
    with urllib.request.urlopen(server.ports.urls()["metrics"], timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf'^nv_inference_count{{model="{model}",version="1"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_infer_with_the_triton_backend_equals_the_local_backend(server: TritonServer, data_root: Path,
                                                                tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gesturekit.cli.main import app
    from gesturekit.pipeline.predictions import read_predictions

    sources = [str(data_root / "hagrid" / "frames"), str(data_root / "video" / "nvgesture_sk_color.avi")]
    common = ["--max-frames", "8", "--quiet"]
    runs = {"local": [], "http": ["--backend", "triton", "--url", f"127.0.0.1:{server.ports.http}"],
            "grpc": ["--backend", "triton", "--url", f"grpc://127.0.0.1:{server.ports.grpc}"]}
    lines = {}
    before = served_count(server, "hand_detector")
    for name, flags in runs.items():
        out = tmp_path / f"{name}.jsonl"
        result = CliRunner().invoke(app, ["infer", *sources, "--out-json", str(out), *common, *flags])
        assert result.exit_code == 0, (name, result.output, result.exception)
        lines[name] = [read_predictions(out.with_suffix(f".{i}.jsonl")) for i in range(len(sources))]
    assert served_count(server, "hand_detector") >= before + 2 * 16, "the triton runs ran on the server"
    want = lines["local"]
    assert [len(per_source) for per_source in want] == [8, 8]
    assert sum(len(line["detections"]) for per_source in want for line in per_source) > 0
    for name in ("http", "grpc"):
        for got_source, want_source in zip(lines[name], want):
            for got, expected in zip(got_source, want_source):
                assert {k: v for k, v in got.items() if k != "detections"} == \
                    {k: v for k, v in expected.items() if k != "detections"}
                assert [h["track_id"] for h in got["detections"]] == [h["track_id"] for h in expected["detections"]]
                assert_same_hands(got["detections"], expected["detections"])
    result = CliRunner().invoke(app, ["infer", sources[1], "--url", "127.0.0.1:1", *common])
    assert result.exit_code != 0 and "--url is for --backend triton" in result.output
