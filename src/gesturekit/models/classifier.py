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
        box_class: int | None = None,
        box_loss_weight: float = 5.0,
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, 32, pretrained)
        self.num_features = self.backbone.channels[-1]
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.label_smoothing = label_smoothing
        self.box_class, self.box_loss_weight = box_class, box_loss_weight
        self.box_head = nn.Linear(self.num_features, 4) if box_class is not None else None
        self.metadata: dict[str, Any] = {}

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] -> pooled features [B,F]."""
        return F.adaptive_avg_pool2d(self.backbone(images)[32], 1).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes)

    def export_forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Tensor-only forward for ONNX: ``probs`` [B,K], and with a box head also ``boxes`` [B,4]
        (the ``box_class`` object's xyxy box as fractions of the crop)."""
        features = self.forward_features(images)
        probs = torch.softmax(self.forward_head(features).float(), dim=1)
        if self.box_head is None:
            return probs
        return probs, self.box_head(features).float()

    def forward(self, images: torch.Tensor, targets: torch.Tensor | dict[str, torch.Tensor] | None = None):
        """Train mode: ``targets`` are labels [B], or with a box head ``{"label": [B], "box": [B,4]}``
        (the box counts only where the label is ``box_class``); returns the losses."""
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            features = self.forward_features(images)
            labels = targets["label"] if isinstance(targets, dict) else targets
            logits = self.forward_head(features)
            losses = {"loss_cls": F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)}
            if self.box_head is not None:
                if not isinstance(targets, dict):
                    raise ValueError("a classifier with a box head needs {'label', 'box'} targets")
                mine = labels == self.box_class
                error = F.smooth_l1_loss(self.box_head(features).float()[mine], targets["box"].float()[mine],
                                         beta=0.02, reduction="sum")
                losses["loss_box"] = self.box_loss_weight * error / mine.sum().clamp(min=1)
            return losses
        probs = self.export_forward(images)
        probs = probs[0] if isinstance(probs, tuple) else probs
        return [{"scores": p, "label": int(p.argmax())} for p in probs]


@register_model
def gesturenet(**kwargs: Any) -> GestureNet:
    """GestureNet-compatible classifier (default MobileNetV2, 160x160 input)."""
    return GestureNet(**kwargs)
