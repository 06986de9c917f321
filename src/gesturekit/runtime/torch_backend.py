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
"""Graphs a model keeps; inputs of further shapes (a folder of images of many sizes) run eagerly."""
_CUDA_LOCK = threading.Lock()
"""Serialises the CUDA graph work of every model: a capture must not see other threads' launches."""


def padded_batch_size(size: int) -> int:
    """The batch a CUDA graph is captured for: ``size`` rounded up to a power of two."""
    return 1 << (size - 1).bit_length()


@dataclass(frozen=True)
class _CapturedGraph:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor
    outputs: tuple[torch.Tensor, ...]


class GraphedForward:
    """A model's ``export_forward`` on tensors already on its device, in its dtype.

    On CUDA a small model's eager call is bound by kernel launches, which a replayed graph does without:
    with ``cuda_graphs``, one graph is captured per input shape (the batch padded to a power of two, at most
    ``MAX_CUDA_GRAPHS`` shapes; further shapes run eagerly). Weights are channels-last on CUDA, the layout
    cuDNN's FP16 convolutions run fastest in.

    Args:
        model: a gesturekit model; moved to ``device`` in ``dtype``.
        cuda_graphs: replay graphs (CUDA only).
    """

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype, cuda_graphs: bool) -> None:
        self.device, self.dtype = device, dtype
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.model = model.eval().to(device, dtype, memory_format=layout)
        self._graphs: dict[tuple[int, ...], _CapturedGraph] = {}

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Args: images [B,3,H,W] on the device. Returns the outputs in ONNX order, float32, the caller's own."""
        images = images.to(self.dtype)
        shape = (padded_batch_size(len(images)), *images.shape[1:])
        if not self._graphable(shape):
            with torch.inference_mode():
                return tuple(o.float() for o in self._forward(images))
        with _CUDA_LOCK:
            captured = self._graphs.get(shape) or self._capture(shape)
            captured.inputs[:len(images)].copy_(images)
            captured.graph.replay()
            return tuple(o[:len(images)].to(torch.float32, copy=True) for o in captured.outputs)

    def capture(self, shape: tuple[int, ...]) -> bool:
        """Capture the graph of inputs of ``shape`` now (the batch already a power of two), not when the first
        such batch comes: a capture costs about a second. False when graphs are off or the budget is spent."""
        if not self._graphable(shape):
            return False
        with _CUDA_LOCK:
            if shape not in self._graphs:
                self._capture(shape)
        return True

    @property
    def graph_count(self) -> int:
        return len(self._graphs)

    def _graphable(self, shape: tuple[int, ...]) -> bool:
        """Whether inputs of ``shape`` replay (or may capture) a graph: graphs on, and captured or under budget."""
        return self.cuda_graphs and (shape in self._graphs or len(self._graphs) < MAX_CUDA_GRAPHS)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.export_forward(images)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    def _capture(self, shape: tuple[int, ...]) -> _CapturedGraph:
        """Warm the model up on a side stream (cuDNN plans, allocations), then capture one call."""
        inputs = torch.zeros(shape, device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
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


class TorchBackend:
    """Runs ``model.export_forward`` on numpy batches (``GraphedForward`` on the device).

    Args:
        model: a gesturekit model with ``metadata``.
        device: ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``).
        half: FP16 weights and inputs (CUDA only); outputs are still float32.
        cuda_graphs: replay a CUDA graph per input shape (``GraphedForward``); ``None``: on CUDA.
    """

    def __init__(self, model: nn.Module, device: str = "cpu", half: bool = False,
                 cuda_graphs: bool | None = None) -> None:
        self.metadata = check_metadata(getattr(model, "metadata", None), "model")
        self.device = torch.device(device)
        if half and self.device.type != "cuda":
            raise GesturekitError(f"half precision needs a CUDA device (got {device!r})")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise GesturekitError(f"device {device!r}: CUDA is not available")
        if cuda_graphs and self.device.type != "cuda":
            raise GesturekitError(f"CUDA graphs need a CUDA device (got {device!r})")
        dtype = torch.float16 if half else torch.float32
        self.forward = GraphedForward(model, self.device, dtype, self.device.type == "cuda" if cuda_graphs is None
                                      else cuda_graphs)

    @property
    def model(self) -> nn.Module:
        return self.forward.model

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Args: batch float32 [B,3,H,W]. Returns float32 outputs in ONNX order."""
        images = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        return [o.cpu().numpy() for o in self.forward(images)]
