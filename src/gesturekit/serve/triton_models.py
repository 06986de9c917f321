"""Triton Python-backend models: the ``TritonPythonModel`` classes behind the repository's ``model.py`` files.

``CascadeModel`` is ``gesture_cascade``: encoded images in, the app's detections out, through one
``GestureRecognizer`` (the cascade of ``gesturekit infer``) that runs the ONNX files of its own model
directory. ``OnnxModel`` runs one ONNX file with ONNX Runtime, for servers without Triton's
``onnxruntime`` backend. Both batch what Triton's dynamic batcher hands them in one model call.

These modules run inside Triton's Python backend stub, where ``triton_python_backend_utils`` is importable.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gesturekit.errors import GesturekitError
from gesturekit.images import read_rgb

MAX_IMAGE_BYTES = 16 << 20
"""The largest encoded image a request row may carry; a larger one is refused before decoding."""
MAX_DECODE_THREADS = 8
"""Threads decoding one model call's images: Pillow releases the GIL while it decodes, and one thread
(about 2.3 ms a 640x480 JPEG) bounded ``serve --device cuda`` well below what the GPU cascade runs."""


def _pb_utils() -> Any:
    import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend stub

    return pb_utils


def _parameters(args: dict[str, str]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def _invalid(message: str) -> Any:
    pb_utils = _pb_utils()
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def decode_rows(rows: np.ndarray) -> list[np.ndarray]:
    """The images of one request's ``image`` tensor (``[B, 1]`` encoded JPEG/PNG bytes) as RGB arrays.

    Raises:
        GesturekitError: a row over :data:`MAX_IMAGE_BYTES`, or bytes that are no whole image (one line
            naming the row). Triton itself refuses a wrong name, type or shape, and an empty batch.
    """
    frames = []
    for row, data in enumerate(rows.reshape(-1)):
        where = f"image row {row}"
        data = bytes(data)
        if len(data) > MAX_IMAGE_BYTES:
            raise GesturekitError(f"{where}: {len(data):,} bytes is over the {MAX_IMAGE_BYTES:,}-byte image limit")
        frames.append(read_rgb(io.BytesIO(data), name=where))
    return frames


class CascadeModel:
    """``gesture_cascade``: input ``image`` (BYTES ``[1]``), output ``detections`` (BYTES ``[1]``, JSON).

    The config's ``models`` parameter names the ONNX files of the model version directory and its
    ``recognizer`` parameter the ``GestureRecognizer`` options (backend, device, thresholds).
    """

    def initialize(self, args: dict[str, str]) -> None:
        from gesturekit.export.triton import CLASSIFIER, DETECTOR, VERIFIER
        from gesturekit.pipeline.recognizer import GestureRecognizer

        params = _parameters(args)
        files = json.loads(params["models"])
        options = json.loads(params["recognizer"])
        root = Path(args["model_repository"]) / args["model_version"]
        verifier, classifier = files.get(VERIFIER), files.get(CLASSIFIER)
        if verifier is None:
            options["verify"] = False
        if classifier is None:
            options["classify"] = False
        self.recognizer = GestureRecognizer(
            detector=root / files[DETECTOR], verifier=verifier and root / verifier,
            classifier=classifier and root / classifier, track=False, **options)
        capture_graphs = getattr(self.recognizer.cascade, "capture_graphs", None)  # the GPU cascade's
        if capture_graphs is not None:
            capture_graphs()  # now, not as a stall of the first requests that bring a new crop count
        self.decoder = ThreadPoolExecutor(min(MAX_DECODE_THREADS, os.cpu_count() or 1),
                                          thread_name_prefix="gk-decode")

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = _pb_utils()
        from gesturekit.pipeline.predictions import prediction_record

        responses: list[Any] = [None] * len(requests)
        frames: list[np.ndarray] = []
        spans: list[tuple[int, int, int]] = []
        decoding = [self.decoder.submit(decode_rows, pb_utils.get_input_tensor_by_name(r, "image").as_numpy())
                    for r in requests]
        for index, future in enumerate(decoding):
            try:
                rows = future.result()
            except GesturekitError as exc:
                responses[index] = _invalid(str(exc))
                continue
            spans.append((index, len(frames), len(rows)))
            frames.extend(rows)
        hands = self.recognizer.cascade(frames) if frames else []
        for index, start, count in spans:
            out = np.array([[json.dumps(prediction_record(h)["detections"]).encode()]
                            for h in hands[start:start + count]], dtype=np.object_)
            responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor("detections", out)])
        return responses

    def finalize(self) -> None:
        self.decoder.shutdown(wait=False, cancel_futures=True)


class OnnxModel:
    """One ONNX file with ONNX Runtime; requests whose inputs share a shape run as one batch."""

    def initialize(self, args: dict[str, str]) -> None:
        from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend

        config = json.loads(args["model_config"])
        threads = int(_parameters(args).get("threads", 0)) or None
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        providers = None
        if args.get("model_instance_kind") == "GPU":
            import onnxruntime

            if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                providers = [("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}),
                             "CPUExecutionProvider"]
            else:  # serve --device cuda with the CPU wheel: gesture_cascade still runs on the GPU (torch)
                print(f"{path}: onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu): "
                      "this model runs on the CPU", file=sys.stderr)
        self.session = OnnxRuntimeBackend(path, threads=threads, providers=providers).session
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = _pb_utils()
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
                 for r in requests]
        groups: dict[tuple[tuple[int, ...], ...], list[int]] = defaultdict(list)
        for index, feed in enumerate(feeds):
            groups[tuple(feed[name].shape[1:] for name in self.inputs)].append(index)
        responses: list[Any] = [None] * len(requests)
        for members in groups.values():
            batch = {name: np.concatenate([feeds[i][name] for i in members]) for name in self.inputs}
            outputs = self.session.run(self.outputs, batch)
            start = 0
            for i in members:
                size = len(feeds[i][self.inputs[0]])
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size]))
                           for name, out in zip(self.outputs, outputs)]
                responses[i] = pb_utils.InferenceResponse(tensors)
                start += size
        return responses
