"""PyTorch backend: runs a model's ``export_forward`` (the same graph as the ONNX file)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import check_metadata

MAX_CUDA_GRAPHS = 32
"""Graphs a backend keeps; inputs of further shapes (a folder of images of many sizes) run eagerly."""
_CUDA_LOCK = threading.Lock()
"""Serialises the CUDA graph work of every backend: a capture must not see other threads' launches."""


def padded_batch_size(size: int) -> int:
    """The batch a CUDA graph is captured for: ``size`` rounded up to a power of two."""
    return 1 << (size - 1).bit_length()


@dataclass(frozen=True)
class _CapturedGraph:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor
    outputs: tuple[torch.Tensor, ...]


class TorchBackend:
    """Runs ``model.export_forward`` under ``torch.inference_mode``.

    Args:
        model: a gesturekit model with ``metadata``.
        device: ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``).
        half: FP16 weights and inputs (CUDA only); outputs are still float32.
        cuda_graphs: replay a CUDA graph captured per input shape (batches padded to a power of
            two, at most ``MAX_CUDA_GRAPHS`` shapes) instead of launching the model's kernels one by
            one; ``None``: on CUDA. A small model's eager call is bound by kernel launches, which a
            replayed graph does without.
    """

    def __init__(self, model: nn.Module, device: str = "cpu", half: bool = False,
                 cuda_graphs: bool | None = None) -> None:
        self.metadata = check_metadata(getattr(model, "metadata", None), "model")
        self.device = torch.device(device)
        if half and self.device.type != "cuda":
            raise GesturekitError(f"half precision needs a CUDA device (got {device!r})")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise GesturekitError(f"device {device!r}: CUDA is not available")
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and self.device.type != "cuda":
            raise GesturekitError(f"CUDA graphs need a CUDA device (got {device!r})")
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.eval().to(self.device, self.dtype)
        self._graphs: dict[tuple[int, ...], _CapturedGraph] = {}

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Args: batch float32 [B,3,H,W]. Returns float32 outputs in ONNX order."""
        images = torch.from_numpy(np.ascontiguousarray(batch))
        if self.cuda_graphs:
            shape = (padded_batch_size(len(images)), *images.shape[1:])
            if shape in self._graphs or len(self._graphs) < MAX_CUDA_GRAPHS:
                return self._replay(images, shape)
        with torch.inference_mode():
            out = self._forward(images.to(self.device, self.dtype))
        return [o.float().cpu().numpy() for o in out]

    def _replay(self, images: torch.Tensor, shape: tuple[int, ...]) -> list[np.ndarray]:
        """``images`` through the graph captured for ``shape`` (captured first if need be)."""
        size = len(images)
        with _CUDA_LOCK:
            captured = self._graphs.get(shape) or self._capture(shape)
            captured.inputs[:size].copy_(images)
            captured.graph.replay()
            return [o[:size].float().cpu().numpy() for o in captured.outputs]

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.export_forward(images)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    def _capture(self, shape: tuple[int, ...]) -> _CapturedGraph:
        """Warm the model up on a side stream (cuDNN plans, allocations), then capture one call."""
        inputs = torch.zeros(shape, device=self.device, dtype=self.dtype)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):
                self._forward(inputs)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = self._forward(inputs)
        self._graphs[shape] = captured = _CapturedGraph(graph, inputs, outputs)
        return captured
