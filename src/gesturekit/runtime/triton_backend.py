"""Triton client backend: a model served by a Triton Inference Server behind the ``Backend`` protocol.

The app, the cascade and the evaluation run unchanged with their inference on a server (``gesturekit
serve``, or the repository of ``gesturekit export triton-repo`` on any Triton): preprocessing and
postprocessing stay here, the network runs there. The model's metadata (classes, input size,
postprocessing, crop convention) is read from the server's model config (``parameters.gesturekit``),
so the client needs no model file.

``url`` is ``host:port`` or ``http://host:port`` (HTTP/REST) or ``grpc://host:port`` (gRPC), both the
KServe v2 protocol.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import ONNX_KEY, read_onnx_metadata


def _client(url: str) -> Any:
    """A tritonclient ``InferenceServerClient`` for ``url`` (gRPC for ``grpc://``, else HTTP)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme == "grpc":
        import tritonclient.grpc as module
    elif parts.scheme == "http":
        import tritonclient.http as module
    else:
        raise GesturekitError(f"--url {url}: expected host:port, http://host:port or grpc://host:port")
    return module.InferenceServerClient(parts.netloc), module


def _call(url: str, what: str, call: Any) -> Any:
    from tritonclient.utils import InferenceServerException

    try:
        return call()
    except InferenceServerException as exc:
        raise GesturekitError(f"{url}: {what}: {exc.message()}") from None
    except Exception as exc:  # noqa: BLE001 - connection errors surface as many types (socket, gevent, grpc)
        raise GesturekitError(f"{url}: {what}: cannot reach the server ({type(exc).__name__}: {exc})") from None


def _json(module: Any) -> dict[str, bool]:
    """gRPC answers protobufs unless asked for JSON; HTTP answers JSON."""
    return {"as_json": True} if module.__name__.endswith("grpc") else {}


def model_config(url: str, model: str) -> dict[str, Any]:
    """The config of ``model`` on the server at ``url``, as JSON."""
    client, module = _client(url)
    try:
        config = _call(url, model, lambda: client.get_model_config(model, **_json(module)))
    finally:
        client.close()
    return config.get("config", config)


class TritonBackend:
    """A model on a Triton server; ``infer`` sends a batch and returns the outputs in the model's order.

    Args:
        url: the server (see module docstring).
        model: the model's name on the server.

    Raises:
        GesturekitError: the server cannot be reached, or has no such model with gesturekit metadata.
    """

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model
        self.path = f"{url}/{model}"  # what errors call this model
        config = model_config(url, model)
        parameters = config.get("parameters", {})
        if ONNX_KEY not in parameters:
            raise GesturekitError(f"{self.path}: the model config has no gesturekit metadata "
                                  "(serve a repository written by gesturekit export triton-repo)")
        self.metadata: dict[str, Any] = json.loads(parameters[ONNX_KEY]["string_value"])
        self.input = config["input"][0]["name"]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.max_batch = max(1, int(config.get("max_batch_size", 1)))
        self._local = threading.local()  # tritonclient's clients are not shared between threads

    def _thread_client(self) -> tuple[Any, Any]:
        if not hasattr(self._local, "client"):
            self._local.client = _client(self.url)
        return self._local.client

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Args: batch float32 [B,3,H,W]. Returns the outputs in the model's order (as ONNX Runtime's)."""
        client, module = self._thread_client()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(batch), self.max_batch):
            chunk = batch[start:start + self.max_batch]
            tensor = module.InferInput(self.input, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            outputs = [module.InferRequestedOutput(name) for name in self.outputs]
            result = _call(self.url, self.model, lambda: client.infer(self.model, [tensor], outputs=outputs))
            parts.append([result.as_numpy(name) for name in self.outputs])
        return [np.concatenate([part[i] for part in parts]) for i in range(len(self.outputs))]


def served_model(url: str, name_or_path: str | Path) -> str:
    """The name, on the server at ``url``, of the model ``name_or_path`` names.

    That is ``name_or_path`` itself when the server has a model of that name; else, for a local model
    (a zoo name or an ``.onnx`` file), the one served model that answers the same question (the same
    task and classes), whatever its weights: ``hand-detector`` finds the server's ``hand_detector``.

    Raises:
        GesturekitError: no such model on the server (the message lists the served models).
    """
    client, module = _client(url)
    try:
        index = _call(url, "repository index", lambda: client.get_model_repository_index(**_json(module)))
    finally:
        client.close()
    index = index.get("models", []) if isinstance(index, dict) else index
    served = [m["name"] for m in index if m.get("state", "READY") == "READY"]
    if str(name_or_path) in served:
        return str(name_or_path)
    from gesturekit.runtime.loading import resolve_model_file

    try:
        local = read_onnx_metadata(resolve_model_file(name_or_path, "onnxruntime"))
    except GesturekitError:
        raise GesturekitError(f"{url}: {name_or_path}: not served here (served: {', '.join(sorted(served))}) "
                              "and not a local model") from None
    matches = []
    for name in served:
        value = model_config(url, name).get("parameters", {}).get(ONNX_KEY)
        if value is not None:
            meta = json.loads(value["string_value"])
            if (meta["task"], meta["classes"]) == (local["task"], local["classes"]):
                matches.append(name)
    if len(matches) != 1:
        found = "no model" if not matches else f"{len(matches)} models ({', '.join(matches)})"
        raise GesturekitError(f"{url}: {found} with the task and classes of {name_or_path}; name one of the served "
                              f"models: {', '.join(served)}")
    return matches[0]


def triton_backend(name_or_path: str | Path, device: str = "cpu", threads: int | None = None, half: bool = False,
                   url: str | None = None) -> TritonBackend:
    """The ``Backend`` factory of ``runtime.loading``: the model ``name_or_path`` names on the server at ``url``
    (``served_model``). ``device``, ``threads`` and ``half`` are the server's business and must be left default."""
    if url is None:
        raise GesturekitError("the triton backend needs the server's --url (e.g. 127.0.0.1:8000 or "
                              "grpc://127.0.0.1:8001)")
    if device != "cpu" or half:
        raise GesturekitError("--device and --precision choose nothing with the triton backend (the server runs the "
                              "models on its own devices)")
    return TritonBackend(url, served_model(url, name_or_path))
