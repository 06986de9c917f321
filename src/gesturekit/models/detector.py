"""DetectNet_v2-style single-stage hand detector.

A pretrained backbone feeds a light top-down neck; for each output stride (default 8, so hands of
15 px are still a few cells wide) a dense head predicts a per-class coverage map (objectness) and
per-class box regression as distances from the cell centre to the box edges. Decoding clusters the
candidate boxes with NMS or DBSCAN (``models/postprocess.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from gesturekit.models.backbones import build_backbone
from gesturekit.models.postprocess import postprocess
from gesturekit.models.registry import register_model


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DenseHead(nn.Module):
    """Two depthwise-separable conv blocks, then coverage [C] and box [4C] maps."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.tower = nn.Sequential(
            _conv_bn_relu(channels, channels, 3, groups=channels), _conv_bn_relu(channels, channels),
            _conv_bn_relu(channels, channels, 3, groups=channels), _conv_bn_relu(channels, channels),
        )
        self.coverage = nn.Conv2d(channels, num_classes, 1)
        self.bbox = nn.Conv2d(channels, 4 * num_classes, 1)
        nn.init.constant_(self.coverage.bias, -math.log(99.0))  # prior probability 0.01
        nn.init.normal_(self.bbox.weight, std=0.01)
        nn.init.constant_(self.bbox.bias, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tower(x)
        return self.coverage(x), self.bbox(x)


class DetectNetV2(nn.Module):
    """Hand detector following the gesturekit model contract (see docs/ARCHITECTURE.md).

    Args:
        num_classes: number of object classes (1 for ``hand``).
        backbone: backbone name (``models/backbones.py``).
        strides: output strides of the head, e.g. ``[8]`` or ``[8, 16]``.
        class_weights: per-class weight of the coverage loss.
    """

    def __init__(
        self,
        num_classes: int = 1,
        backbone: str = "mobilenet_v2",
        pretrained: bool = True,
        head_channels: int = 64,
        strides: list[int] | None = None,
        class_weights: list[float] | None = None,
        postprocessing: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.strides = sorted(strides or [8])
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, max(16, self.strides[-1]), pretrained)
        used = [(s, c) for s, c in zip(self.backbone.strides, self.backbone.channels) if s >= self.strides[0]]
        self.lateral = nn.ModuleDict({str(s): _conv_bn_relu(c, head_channels) for s, c in used})
        self.heads = nn.ModuleDict({str(s): DenseHead(head_channels, num_classes) for s in self.strides})
        self.register_buffer("class_weights", torch.tensor(class_weights or [1.0] * num_classes), persistent=False)
        self.postprocessing = dict(postprocessing or {})
        self.metadata: dict[str, Any] = {}

    # ---------------------------------------------------------------- dense outputs
    def forward_levels(self, images: torch.Tensor) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """Returns ``[(stride, coverage [B,C,h,w], box [B,4C,h,w])]`` for each head stride."""
        features = self.backbone(images)
        merged, top = {}, None
        for stride in sorted((int(s) for s in self.lateral), reverse=True):
            x = self.lateral[str(stride)](features[stride])
            if top is not None:
                x = x + F.interpolate(top, size=x.shape[-2:], mode="nearest")
            merged[stride] = top = x
        return [(s, *self.heads[str(s)](merged[s])) for s in self.strides]

    @staticmethod
    def _cell_centres(stride: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([cx.flatten(), cy.flatten()], 1)  # [h*w, 2]

    def _decode_level(self, stride: int, box: torch.Tensor) -> torch.Tensor:
        """box [B,4C,h,w] -> xyxy [B,h*w,C,4] in input pixels."""
        b, _, h, w = box.shape
        centres = self._cell_centres(stride, h, w, box.device)
        dist = torch.exp(box.float().clamp(max=8.0)) * stride
        dist = dist.view(b, self.num_classes, 4, h * w).permute(0, 3, 1, 2)  # [B,hw,C,4] = l,t,r,b
        c = centres[None, :, None, :]
        return torch.cat([c - dist[..., :2], c + dist[..., 2:]], dim=-1)

    def export_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tensor-only forward for ONNX: ``boxes`` [B,N,4] (class of the best score) and ``scores`` [B,N,C]."""
        all_boxes, all_scores = [], []
        for stride, cov, box in self.forward_levels(images):
            scores = torch.sigmoid(cov.float()).flatten(2).transpose(1, 2)  # [B,hw,C]
            boxes = self._decode_level(stride, box)  # [B,hw,C,4]
            best = scores.argmax(-1)[..., None, None].expand(-1, -1, 1, 4)
            all_boxes.append(boxes.gather(2, best).squeeze(2))
            all_scores.append(scores)
        return torch.cat(all_boxes, 1), torch.cat(all_scores, 1)

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            return self.compute_loss(self.forward_levels(images), targets)
        boxes, scores = self.export_forward(images)
        return postprocess(boxes, scores, **self.postprocessing)

    # ---------------------------------------------------------------- training targets and loss
    def _level_of(self, sizes: torch.Tensor) -> torch.Tensor:
        """Index of the head that owns a box of max side ``sizes`` (smallest stride with size <= 16*stride)."""
        level = torch.full_like(sizes, len(self.strides) - 1, dtype=torch.long)
        for i in reversed(range(len(self.strides) - 1)):
            level[sizes <= 16 * self.strides[i]] = i
        return level

    def _assign(self, stride: int, h: int, w: int, gt: torch.Tensor, owned: torch.Tensor) -> torch.Tensor:
        """Index of the ground-truth box each cell regresses ([h*w], -1 for background)."""
        centres = self._cell_centres(stride, h, w, gt.device)
        if not owned.any():
            return torch.full((h * w,), -1, dtype=torch.long, device=gt.device)
        bw, bh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
        bcx, bcy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
        rx = torch.clamp(0.25 * bw, min=0.5 * stride)
        ry = torch.clamp(0.25 * bh, min=0.5 * stride)
        inside = ((centres[:, None, 0] - bcx).abs() <= rx) & ((centres[:, None, 1] - bcy).abs() <= ry) & owned
        area = torch.where(inside, (bw * bh)[None, :], torch.full_like(inside, float("inf"), dtype=torch.float32))
        min_area, index = area.min(1)
        return torch.where(torch.isfinite(min_area), index, torch.full_like(index, -1))

    def compute_loss(self, levels, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        cov_losses, box_losses, num_pos = [], [], 0
        for li, (stride, cov, box) in enumerate(levels):
            b, c, h, w = cov.shape
            decoded = self._decode_level(stride, box)  # [B,hw,C,4]
            cov_target = torch.zeros_like(cov, dtype=torch.float32).flatten(2)  # [B,C,hw]
            for i, target in enumerate(targets):
                gt, labels = target["boxes"].float(), target["labels"].long()
                if gt.numel() == 0:
                    continue
                sizes = torch.maximum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1])
                owner = self._assign(stride, h, w, gt, (self._level_of(sizes) == li)[None, :])
                pos = torch.nonzero(owner >= 0).flatten()
                if pos.numel() == 0:
                    continue
                matched = owner[pos]
                cov_target[i, labels[matched], pos] = 1.0
                pred = decoded[i, pos, labels[matched]]
                box_losses.append(generalized_box_iou_loss(pred, gt[matched], reduction="sum"))
                num_pos += pos.numel()
            focal = sigmoid_focal_loss(cov.float().flatten(2), cov_target, reduction="none")
            cov_losses.append((focal * self.class_weights[None, :, None]).sum())
        norm = max(num_pos, 1)
        zero = levels[0][1].sum() * 0.0
        return {
            "loss_coverage": sum(cov_losses) / norm,
            "loss_bbox": 2.0 * (sum(box_losses) / norm if box_losses else zero),
        }


@register_model
def detectnet_v2(**kwargs: Any) -> DetectNetV2:
    """DetectNet_v2-style hand detector (default MobileNetV2 backbone, stride-8 head)."""
    return DetectNetV2(**kwargs)
