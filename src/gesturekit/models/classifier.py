"""GestureNet-compatible hand-crop classifier: pretrained backbone, global pooling, linear head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gesturekit.models.backbones import build_backbone
from gesturekit.models.registry import register_model


class GestureNet(nn.Module):
    """Classifies hand crops into ``num_classes`` gestures (model contract in docs/ARCHITECTURE.md)."""

    def __init__(
        self,
        num_classes: int = 6,
        backbone: str = "mobilenet_v2",
        pretrained: bool = True,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, 32, pretrained)
        self.num_features = self.backbone.channels[-1]
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.label_smoothing = label_smoothing
        self.metadata: dict[str, Any] = {}

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] -> pooled features [B,F]."""
        return F.adaptive_avg_pool2d(self.backbone(images)[32], 1).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes)

    def export_forward(self, images: torch.Tensor) -> torch.Tensor:
        """Tensor-only forward for ONNX: ``probs`` [B,K]."""
        return torch.softmax(self.forward_head(self.forward_features(images)).float(), dim=1)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            logits = self.forward_head(self.forward_features(images))
            return {"loss_cls": F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)}
        probs = self.export_forward(images)
        return [{"scores": p, "label": int(p.argmax())} for p in probs]


@register_model
def gesturenet(**kwargs: Any) -> GestureNet:
    """GestureNet-compatible classifier (default MobileNetV2, 160x160 input)."""
    return GestureNet(**kwargs)
