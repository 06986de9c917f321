"""PyTorch backend: runs a model's ``export_forward`` (the same graph as the ONNX file)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import check_metadata


class TorchBackend:
    """Runs ``model.export_forward`` under ``torch.inference_mode``.

    Args:
        model: a gesturekit model with ``metadata``.
        device: ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``).
        half: FP16 weights and inputs (CUDA only); outputs are still float32.
    """

    def __init__(self, model: nn.Module, device: str = "cpu", half: bool = False) -> None:
        self.metadata = check_metadata(getattr(model, "metadata", None), "model")
        self.device = torch.device(device)
        if half and self.device.type != "cuda":
            raise GesturekitError(f"half precision needs a CUDA device (got {device!r})")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise GesturekitError(f"device {device!r}: CUDA is not available")
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.eval().to(self.device, self.dtype)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Args: batch float32 [B,3,H,W]. Returns float32 outputs in ONNX order."""
        images = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model.export_forward(images)
        if isinstance(out, torch.Tensor):
            out = (out,)
        return [o.float().cpu().numpy() for o in out]
