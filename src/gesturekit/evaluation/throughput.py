"""Images per second of an ONNX model through ONNX Runtime on this machine, stored per machine in the
model's ``throughput.json`` so that a model card names where its speed was measured."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gesturekit.errors import GesturekitError
from gesturekit.io import atomic_write_json

THROUGHPUT_FILE = "throughput.json"
FRAME = (480, 640)
"""A detector is timed on the input the runtime makes of a 640x480 frame; a classifier on one crop."""


def machine_name() -> str:
    """The CPU model and its logical cores, e.g. ``Intel(R) Xeon(R) ... (2 cores)``."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({os.cpu_count()} cores)"


def model_input(meta: dict[str, Any]) -> np.ndarray:
    """One preprocessed input [3,H,W] of the model's runtime shape (zeros: speed does not depend on values)."""
    size = int(meta["input_size"])
    if meta["task"] == "detection":
        from gesturekit.runtime.detector import preprocess_frame

        return preprocess_frame(np.zeros((*FRAME, 3), np.uint8), size)[0]
    return np.zeros((3, size, size), np.float32)


def measure_throughput(model_file: Path, batches: list[int], seconds: float = 2.0,
                       threads: int | None = None) -> list[dict[str, Any]]:
    """Images per second of the model call at each batch size: warm-up, then back-to-back calls for
    about ``seconds`` (at least 5 calls); one row per batch."""
    from gesturekit.runtime.onnxruntime_backend import OnnxRuntimeBackend, default_threads

    backend = OnnxRuntimeBackend(model_file, threads=threads, spin=True)
    sample = model_input(backend.metadata)
    rows = []
    for batch in batches:
        inputs = np.repeat(sample[None], batch, axis=0)
        for _ in range(2):
            backend.infer(inputs)
        calls, started = 0, time.perf_counter()
        while calls < 5 or time.perf_counter() - started < seconds:
            backend.infer(inputs)
            calls += 1
        elapsed = time.perf_counter() - started
        rows.append({"batch": batch, "images_per_s": round(batch * calls / elapsed, 2), "calls": calls,
                     "input_shape": list(inputs.shape[1:])})
    return [{**row, "machine": machine_name(), "backend": "onnxruntime", "threads": threads or default_threads(),
             "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d")} for row in rows]


def read_throughput(model_dir: Path) -> list[dict[str, Any]]:
    path = model_dir / THROUGHPUT_FILE
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text())["measurements"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise GesturekitError(f"{path}: expected {{\"measurements\": [...]}}") from None


def store_throughput(model_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Replace this machine's rows in ``model_dir/throughput.json``, keeping other machines'."""
    machines = {r["machine"] for r in rows}
    kept = [r for r in read_throughput(model_dir) if r["machine"] not in machines]
    return atomic_write_json(model_dir / THROUGHPUT_FILE, {"measurements": kept + rows})
