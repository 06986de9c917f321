"""DetectNet_v2-style single-stage hand detector.

A pretrained backbone feeds a light top-down neck; for each output stride (default 8, so hands of
15 px are still a few cells wide) a dense head predicts a per-class coverage map (objectness) and
per-class box regression as distances from the cell centre to the box edges. Decoding clusters the
candidate boxes with NMS or DBSCAN (``models/postprocess.py``).
"""

from __future__ import annotations

import math
from typing import Any, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_area, generalized_box_iou_loss, sigmoid_focal_loss

from gesturekit.config.specs import CoverageLoss
from gesturekit.models.backbones import build_backbone
from gesturekit.models.postprocess import postprocess
from gesturekit.models.registry import register_model


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each box in ``a`` [N,4] with the box in the same row of ``b`` [N,4] (xyxy)."""
    wh = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (box_area(a) + box_area(b) - inter).clamp(min=1e-6)


def quality_focal_loss(logits: torch.Tensor, targets: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Quality focal loss (Li et al., Generalized Focal Loss, 2020), element-wise: binary cross-entropy
    to a soft target in [0, 1], scaled by ``|target - sigmoid(logits)| ** beta``."""
    scale = (targets - logits.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * scale


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
        context_stride: deepest backbone stride feeding the top-down neck (None: 16, or the
            largest head stride).
        class_weights: per-class weight of the coverage loss.
        positive_radius: smallest half-size, in strides, of the region of positive cells around a
            box centre (``_assign``); larger gives small boxes more positive cells.
        positives_inside_box: a positive cell's centre must also lie inside its box (FCOS), or be the
            cell holding the box centre. A cell centred outside a box cannot regress it (the distances
            to the edges are positive), so without this rule the cells above and below a hand under
            ``2 * positive_radius`` strides tall learn boxes that reach out to their own centres.
        coverage_loss: ``focal`` trains each positive cell's coverage towards 1; ``quality_focal``
            towards the IoU of the cell's box with its ground truth, so that the score ranks boxes by
            how well they fit as well as by how sure the model is of a hand.
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
        positive_radius: float = 0.5,
        positives_inside_box: bool = False,
        context_stride: int | None = None,
        coverage_loss: CoverageLoss = "focal",
    ) -> None:
        super().__init__()
        self.strides = sorted(strides or [8])
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, max(context_stride or 16, self.strides[-1]), pretrained)
        used = [(s, c) for s, c in zip(self.backbone.strides, self.backbone.channels) if s >= self.strides[0]]
        self.lateral = nn.ModuleDict({str(s): _conv_bn_relu(c, head_channels) for s, c in used})
        self.heads = nn.ModuleDict({str(s): DenseHead(head_channels, num_classes) for s in self.strides})
        self.register_buffer("class_weights", torch.tensor(class_weights or [1.0] * num_classes), persistent=False)
        self.positive_radius = positive_radius
        self.positives_inside_box = positives_inside_box
        if coverage_loss not in get_args(CoverageLoss):
            raise ValueError(f"coverage_loss must be one of {get_args(CoverageLoss)}, got {coverage_loss!r}")
        self.coverage_loss = coverage_loss
        self.postprocessing = dict(postprocessing or {})
        self.metadata: dict[str, Any] = {}
        self._teacher: tuple[DetectNetV2, float] | None = None  # set_teacher

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
            levels = self.forward_levels(images)
            losses = self.compute_loss(levels, targets)
            if self._teacher is not None:
                teacher, weight = self._teacher
                if teacher.class_weights.device != images.device:  # follow the student (fit moves it once)
                    teacher.to(images.device)
                with torch.no_grad():
                    teacher_levels = teacher.forward_levels(images)
                losses.update({k: weight * v for k, v in self.distillation_loss(levels, teacher_levels).items()})
            return losses
        boxes, scores = self.export_forward(images)
        found = postprocess(boxes.detach().float().cpu().numpy(), scores.detach().float().cpu().numpy(), **self.postprocessing)
        return [{k: torch.from_numpy(v).to(images.device) for k, v in d.items()} for d in found]

    # ---------------------------------------------------------------- distillation
    def set_teacher(self, teacher: DetectNetV2 | None, weight: float = 1.0) -> None:
        """Distil from ``teacher`` while training (``None`` stops): its dense outputs become soft
        targets (``distillation_loss``), added to the loss times ``weight``.

        The teacher is frozen, kept in eval mode and out of this model's modules, parameters and
        ``state_dict``, so checkpoints and exports hold the student alone.

        Raises:
            ValueError: the teacher's strides or classes differ from this model's.
        """
        if teacher is not None and (teacher.strides != self.strides or teacher.num_classes != self.num_classes):
            raise ValueError(f"the teacher (strides {teacher.strides}, {teacher.num_classes} classes) does not "
                             f"match the student (strides {self.strides}, {self.num_classes} classes)")
        self._teacher = None if teacher is None else (teacher.eval().requires_grad_(False), float(weight))

    def distillation_loss(self, levels, teacher_levels) -> dict[str, torch.Tensor]:
        """Dense distillation from a teacher's ``forward_levels`` on the same images.

        Coverage: Bernoulli KL divergence from the teacher's coverage to the student's, per cell.
        Boxes: GIoU loss to the teacher's decoded boxes, each cell weighted by the teacher's
        coverage. Both are normalised by the teacher's total coverage (its soft count of positive
        cells), as ``compute_loss`` normalises by the positive cells. Unlike the labels, the
        teacher also speaks for unlabelled hands and for cells near a box's edge.
        """
        kl = box_loss = mass = 0.0
        for (stride, cov, box), (_, teacher_cov, teacher_box) in zip(levels, teacher_levels):
            student_logits, teacher_logits = cov.float(), teacher_cov.float()
            soft = torch.sigmoid(teacher_logits)
            kl = kl + (F.binary_cross_entropy_with_logits(student_logits, soft, reduction="sum")
                       - F.binary_cross_entropy_with_logits(teacher_logits, soft, reduction="sum"))
            weight = soft.flatten(2).transpose(1, 2)  # [B,P,C]
            giou = generalized_box_iou_loss(self._decode_level(stride, box).reshape(-1, 4),
                                            self._decode_level(stride, teacher_box).reshape(-1, 4), reduction="none")
            box_loss = box_loss + (giou.view_as(weight) * weight).sum()
            mass = mass + weight.sum()
        norm = torch.clamp(mass, min=1.0)
        return {"loss_distill_coverage": kl / norm, "loss_distill_bbox": 2.0 * box_loss / norm}

    # ---------------------------------------------------------------- training targets and loss
    def _level_of(self, sizes: torch.Tensor) -> torch.Tensor:
        """Index of the head that owns a box of max side ``sizes`` (smallest stride with size <= 16*stride)."""
        level = torch.full_like(sizes, len(self.strides) - 1, dtype=torch.long)
        for i in reversed(range(len(self.strides) - 1)):
            level[sizes <= 16 * self.strides[i]] = i
        return level

    def _assign(self, stride: int, h: int, w: int, gt: torch.Tensor, owned: torch.Tensor) -> torch.Tensor:
        """Index of the ground-truth box each cell regresses, -1 for background.

        A cell is positive for a box when its centre lies within a quarter of the box size (at
        least ``positive_radius`` strides) of the box centre and, with ``positives_inside_box``,
        inside the box or in the cell holding the box centre; overlaps go to the smallest box.

        Args:
            gt: [B,G,4] boxes (padding rows are not ``owned``); owned: [B,G] boxes of this level.
        Returns:
            [B,h*w] box index per cell.
        """
        centres = self._cell_centres(stride, h, w, gt.device)  # [P,2]
        cx, cy = centres[None, :, None, 0], centres[None, :, None, 1]  # [1,P,1]
        x1, y1, x2, y2 = (gt[:, None, :, i] for i in range(4))  # [B,1,G]
        bw, bh = x2 - x1, y2 - y1
        dx, dy = (cx - (x1 + x2) / 2).abs(), (cy - (y1 + y2) / 2).abs()
        rx = torch.clamp(0.25 * bw, min=self.positive_radius * stride)
        ry = torch.clamp(0.25 * bh, min=self.positive_radius * stride)
        inside = (dx <= rx) & (dy <= ry) & owned[:, None, :]  # [B,P,G]
        if self.positives_inside_box:
            in_box = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
            holds_centre = (dx <= stride / 2) & (dy <= stride / 2)
            inside &= in_box | holds_centre
        area = torch.where(inside, bw * bh, torch.full_like(inside, float("inf"), dtype=gt.dtype))
        min_area, index = area.min(-1)
        return torch.where(torch.isfinite(min_area), index, torch.full_like(index, -1))

    @staticmethod
    def _pad_targets(targets: list[dict[str, torch.Tensor]], device: torch.device):
        """Stack per-image targets into [B,G,4] boxes, [B,G] labels and a [B,G] validity mask."""
        g = max(1, max(len(t["boxes"]) for t in targets))
        boxes = torch.zeros(len(targets), g, 4, device=device)
        labels = torch.zeros(len(targets), g, dtype=torch.long, device=device)
        valid = torch.zeros(len(targets), g, dtype=torch.bool, device=device)
        for i, t in enumerate(targets):
            n = len(t["boxes"])
            boxes[i, :n], labels[i, :n], valid[i, :n] = t["boxes"].float(), t["labels"].long(), True
        return boxes, labels, valid

    def compute_loss(self, levels, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Focal (or quality focal) loss on the coverage maps and GIoU loss on the positive cells' boxes, batched."""
        gt, labels, valid = self._pad_targets(targets, levels[0][1].device)
        sizes = torch.maximum(gt[..., 2] - gt[..., 0], gt[..., 3] - gt[..., 1])
        level_of = self._level_of(sizes)
        cov_loss = box_loss = levels[0][1].sum() * 0.0
        num_pos = torch.zeros((), device=gt.device)
        for li, (stride, cov, box) in enumerate(levels):
            _, c, h, w = cov.shape
            owner = self._assign(stride, h, w, gt, valid & (level_of == li))  # [B,P]
            positive = owner >= 0
            safe = owner.clamp(min=0)
            cls = labels.gather(1, safe)  # [B,P]
            decoded = self._decode_level(stride, box)  # [B,P,C,4]
            pred = decoded.gather(2, cls[..., None, None].expand(-1, -1, 1, 4)).squeeze(2)  # [B,P,4]
            target = gt.gather(1, safe[..., None].expand(-1, -1, 4))  # [B,P,4]
            own_class = F.one_hot(cls, c).permute(0, 2, 1).float()  # [B,C,P]
            logits = cov.float().flatten(2)
            if self.coverage_loss == "quality_focal":
                quality = torch.zeros_like(positive, dtype=torch.float32)  # [B,P] each positive cell's box fit
                quality[positive] = paired_iou(pred[positive].detach(), target[positive])
                focal = quality_focal_loss(logits, own_class * quality[:, None, :])
            else:
                focal = sigmoid_focal_loss(logits, own_class * positive[:, None, :], reduction="none")
            cov_loss = cov_loss + (focal * self.class_weights[None, :, None]).sum()
            giou = generalized_box_iou_loss(pred[positive], target[positive], reduction="sum")
            box_loss = box_loss + giou
            num_pos = num_pos + positive.sum()
        norm = num_pos.clamp(min=1.0)
        return {"loss_coverage": cov_loss / norm, "loss_bbox": 2.0 * box_loss / norm}


@register_model
def detectnet_v2(**kwargs: Any) -> DetectNetV2:
    """DetectNet_v2-style hand detector (default MobileNetV2 backbone, stride-8 head)."""
    return DetectNetV2(**kwargs)
