"""The Triton model repository: every config.pbtxt parsed with Triton's own protobuf schema and checked
against the ONNX files it serves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import json_format, text_format
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc
from typer.testing import CliRunner

from gesturekit.cli.main import app
from gesturekit.errors import GesturekitError
from gesturekit.export.triton import RepositoryOptions, write_repository
from gesturekit.models.metadata import read_onnx_metadata
from gesturekit.models.zoo import zoo_path

DETECTOR = zoo_path("hand-detector-pruned-int8") / "model.onnx"
CLASSIFIER = zoo_path("gesture-classifier-int8") / "model.onnx"
VERIFIER = zoo_path("hand-verifier") / "model.onnx"
ONNX_TYPES = {onnx.TensorProto.FLOAT: mc.TYPE_FP32}


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def check_against_onnx(config: mc.ModelConfig, model_file: Path) -> None:
    """Names, types and dims (batch axis dropped, named axes -1) of ``config`` equal the ONNX graph's."""
    graph = onnx.load(str(model_file)).graph
    for tensors, values in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in tensors] == [v.name for v in values]
        for tensor, value in zip(tensors, values):
            shape = value.type.tensor_type.shape.dim
            assert shape[0].dim_param, "the batch axis is dynamic in the ONNX file"
            assert list(tensor.dims) == [d.dim_value if d.HasField("dim_value") else -1 for d in shape[1:]]
            assert tensor.data_type == ONNX_TYPES[value.type.tensor_type.elem_type]


def test_repository_matches_the_onnx_files(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", DETECTOR, CLASSIFIER, VERIFIER, RepositoryOptions(max_batch_size=8))
    assert sorted(p.name for p in repo.iterdir()) == ["gesture_cascade", "gesture_classifier", "hand_detector",
                                                      "hand_verifier"]
    for name, source in (("hand_detector", DETECTOR), ("gesture_classifier", CLASSIFIER), ("hand_verifier", VERIFIER)):
        config = parse(repo / name / "config.pbtxt")
        model_file = repo / name / "1" / "model.onnx"
        assert config.name == name and config.backend == "onnxruntime" and config.max_batch_size == 8
        check_against_onnx(config, model_file)
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
        assert config.dynamic_batching.max_queue_delay_microseconds > 0
        assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
        assert not config.optimization.HasField("execution_accelerators")
        assert json.loads(config.parameters["gesturekit"].string_value) == read_onnx_metadata(source)
    detector = parse(repo / "hand_detector" / "config.pbtxt")
    assert [list(t.dims) for t in detector.input] == [[3, -1, -1]]  # any frame size
    classes = read_onnx_metadata(CLASSIFIER)["classes"]
    assert list(parse(repo / "gesture_classifier" / "config.pbtxt").output[0].dims) == [len(classes)]

    cascade = parse(repo / "gesture_cascade" / "config.pbtxt")
    assert cascade.backend == "python" and cascade.max_batch_size == 8
    assert [(t.name, t.data_type, list(t.dims)) for t in cascade.input] == [("image", mc.TYPE_STRING, [1])]
    assert [(t.name, t.data_type, list(t.dims)) for t in cascade.output] == [("detections", mc.TYPE_STRING, [1])]
    files = json.loads(cascade.parameters["models"].string_value)
    for name, file in files.items():
        assert (repo / "gesture_cascade" / "1" / file).read_bytes() == (repo / name / "1" / "model.onnx").read_bytes()
    assert "TritonPythonModel" in (repo / "gesture_cascade" / "1" / "model.py").read_text()


def test_tensorrt_accelerator_and_gpu_instances(tmp_path: Path) -> None:
    options = RepositoryOptions(device="cuda", accelerator="tensorrt", trt_precision="int8", max_batch_size=1)
    repo = write_repository(tmp_path / "repo", DETECTOR, CLASSIFIER, None, options)
    assert not (repo / "hand_verifier").exists()
    for name in ("hand_detector", "gesture_classifier"):
        config = parse(repo / name / "config.pbtxt")
        (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert accelerator.name == "tensorrt"
        assert accelerator.parameters["precision_mode"] == "INT8"
        assert int(accelerator.parameters["max_workspace_size_bytes"]) > 0
        assert accelerator.parameters["trt_engine_cache_enable"] == "1"
        assert accelerator.parameters["trt_engine_cache_path"].endswith(name)
        assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
        assert config.max_batch_size == 1 and not config.HasField("dynamic_batching")
    cascade = parse(repo / "gesture_cascade" / "config.pbtxt")
    assert json.loads(cascade.parameters["recognizer"].string_value)["device"] == "cuda"
    assert "hand_verifier" not in json.loads(cascade.parameters["models"].string_value)


def test_gesturenet_names_rename_the_classifier_and_keep_its_outputs(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", DETECTOR, CLASSIFIER, None, RepositoryOptions(io_names="gesturenet"))
    config = parse(repo / "gesture_classifier" / "config.pbtxt")
    assert [(t.name, list(t.dims)) for t in config.input] == [("input_1", [3, 160, 160])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("activation_18", [6])]
    check_against_onnx(config, repo / "gesture_classifier" / "1" / "model.onnx")
    batch = np.random.default_rng(0).normal(size=(2, 3, 160, 160)).astype(np.float32)
    renamed = ort.InferenceSession(str(repo / "gesture_classifier" / "1" / "model.onnx"))
    original = ort.InferenceSession(str(CLASSIFIER))
    np.testing.assert_array_equal(renamed.run(["activation_18"], {"input_1": batch})[0],
                                  original.run(["probs"], {"images": batch})[0])
    # the detector and the cascade keep gesturekit's names
    assert [t.name for t in parse(repo / "hand_detector" / "config.pbtxt").input] == ["images"]


def test_bad_inputs_are_refused_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(GesturekitError, match="already exists"):
        write_repository(tmp_path / "taken", DETECTOR, CLASSIFIER)
    with pytest.raises(GesturekitError, match="a classification model where a detection model is needed"):
        write_repository(tmp_path / "swapped", CLASSIFIER, DETECTOR)
    assert not (tmp_path / "swapped").exists() and [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_cli_writes_the_repository(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "triton-repo", "-o", str(tmp_path / "repo"), "--no-verify",
                                      "--io-names", "gesturenet", "--max-batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["gesture_cascade", "gesture_classifier",
                                                                    "hand_detector"]
    config = parse(tmp_path / "repo" / "gesture_classifier" / "config.pbtxt")
    assert config.max_batch_size == 4 and config.input[0].name == "input_1"
    assert read_onnx_metadata(tmp_path / "repo" / "hand_detector" / "1" / "model.onnx")["task"] == "detection"


def test_the_gpu_cascade_serves_the_torch_checkpoints(tmp_path: Path, data_root: Path) -> None:
    from gesturekit.pipeline.gpu_cascade import GpuCascade
    from gesturekit.pipeline.recognizer import GestureRecognizer
    from gesturekit.serve.triton_models import CascadeModel

    models = [zoo_path(name) / "model.onnx" for name in ("hand-detector", "gesture-classifier", "hand-verifier")]
    options = RepositoryOptions(device="cuda", model_backend="python", cascade_backend="torch")
    repo = write_repository(tmp_path / "repo", *models, options)
    cascade = parse(repo / "gesture_cascade" / "config.pbtxt")
    assert [g.kind for g in cascade.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    files = json.loads(cascade.parameters["models"].string_value)
    assert files == {name: f"{name}.pt" for name in ("hand_detector", "gesture_classifier", "hand_verifier")}
    for name, model in (("hand_detector", models[0]), ("gesture_classifier", models[1]), ("hand_verifier", models[2])):
        assert (repo / "gesture_cascade" / "1" / files[name]).read_bytes() == model.with_suffix(".pt").read_bytes()
    recognizer = json.loads(cascade.parameters["recognizer"].string_value)
    assert (recognizer["backend"], recognizer["device"]) == ("torch", "cuda")

    # the model Triton loads, on this machine's CPU: the same batched code, the hands of a local recognizer
    recognizer.update(device="cpu", primary__batched=True)
    cascade.parameters["recognizer"].string_value = json.dumps(recognizer)
    served = CascadeModel()
    served.initialize({"model_config": json_format.MessageToJson(cascade, preserving_proto_field_name=True),
                       "model_repository": str(repo / "gesture_cascade"), "model_version": "1"})
    assert isinstance(served.recognizer.cascade, GpuCascade)
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((data_root / "hagrid" / "frames").glob("*.jpg"))[:3]]
    local = GestureRecognizer(backend="torch", track=False)
    for got, expected in zip(served.recognizer.cascade(frames), (local.recognize(f).hands for f in frames)):
        assert [h.gesture for h in got] == [h.gesture for h in expected]


def test_the_torch_cascade_needs_cuda_and_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(GesturekitError, match="serves on cuda only"):
        RepositoryOptions(cascade_backend="torch")
    options = RepositoryOptions(device="cuda", model_backend="python", cascade_backend="torch")
    with pytest.raises(GesturekitError, match=r"model\.onnx: the GPU cascade runs torch checkpoints, and there is "
                                              r"no model\.pt beside it"):
        write_repository(tmp_path / "repo", DETECTOR, CLASSIFIER, None, options)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("kind", ["onnx", "cascade"])
def test_model_py_imports_gesturekit_from_the_servers_search_path_in_an_isolated_interpreter(
        tmp_path: Path, kind: str) -> None:
    """Triton's backend stub embeds a Python that ignores PYTHONPATH (seen with a virtual environment's
    packages on the GPU machine): ``model.py`` takes ``gesturekit serve``'s search path from its own variable.
    Here an isolated interpreter without site-packages (-I -S) stands in for the stub."""
    import os
    import subprocess
    import sys

    from gesturekit.export.triton import MODEL_PY, SEARCH_PATH_VARIABLE
    from gesturekit.serve.server import server_environment

    model_py = tmp_path / "model.py"
    model_py.write_text(MODEL_PY[kind])
    command = [sys.executable, "-I", "-S", str(model_py)]
    bare = {k: v for k, v in os.environ.items() if k != SEARCH_PATH_VARIABLE}
    without = subprocess.run(command, env=bare, capture_output=True, text=True, timeout=120)
    assert without.returncode == 1 and "No module named" in without.stderr, without.stderr
    served = subprocess.run(command, env=server_environment(), capture_output=True, text=True, timeout=120)
    assert served.returncode == 0, served.stderr


def test_a_single_model_on_a_gpu_instance_runs_on_the_cpu_without_onnxruntimes_cuda_provider(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """serve --device cuda where onnxruntime is the CPU wheel (as on the GPU machine): hand_detector & co. load
    on the CPU with one line saying so, instead of failing the whole server."""
    from gesturekit.serve.triton_models import OnnxModel

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    repo = write_repository(tmp_path / "repo", DETECTOR, CLASSIFIER, None,
                            RepositoryOptions(device="cuda", model_backend="python"))
    config = parse(repo / "hand_detector" / "config.pbtxt")
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    model = OnnxModel()
    model.initialize({"model_config": json_format.MessageToJson(config, preserving_proto_field_name=True),
                      "model_repository": str(repo / "hand_detector"), "model_version": "1",
                      "model_instance_kind": "GPU", "model_instance_device_id": "0"})
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert "has no CUDAExecutionProvider (pip install onnxruntime-gpu): this model runs on the CPU" in \
        capsys.readouterr().err
