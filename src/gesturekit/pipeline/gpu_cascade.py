"""The batched GPU cascade: everything after decoding as tensor work on one device, per batch of frames.

The CPU cascade (``pipeline.cascade.Cascade`` over ``runtime`` models) does its Python work per frame and
per hand; on a GPU that Python, not the models, bounds the frame rate. Here a batch of frames is uploaded
once (pinned memory, non-blocking), resized with the runtime's pixel-budget rule, normalised and run
through the detector; decoding, NMS (``torchvision.ops.batched_nms`` over every frame at once), the
verifier and the classifier (on crops cut with resampling matrices from the frames already on
the device, with the crop convention's integer regions), the thresholds and the gesture confirmation are
tensor operations, and only the final hands come back to the host. The models replay a CUDA graph per
batch size, rounded up to a power of two. ``device="cpu"`` runs the same code, which is how the tests
check it against the CPU path.

Frames and crops are resized bit for bit as the CPU path resizes them (torchvision's antialiased uint8
resize, ``runtime.preprocess``): its fixed-point filters as matrices, applied by products whose float sums
are exact, each pass rounded to 8 bits. The models then see the CPU path's pixels, to which the verifier's
box head, the thresholds and a classifier's near-ties are sensitive. Crops are cut from the frames on the
device, one window per crop, and resized the same way (``resize_crops``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms

from gesturekit.config.app import AppConfig, RefineBoxes
from gesturekit.config.specs import CropConvention
from gesturekit.data.transforms import MEAN, PAD_STRIDE, STD, letterbox_geometry
from gesturekit.errors import GesturekitError
from gesturekit.models.metadata import check_metadata
from gesturekit.models.zoo import default_models
from gesturekit.optimize.restore import load_model_from_checkpoint
from gesturekit.pipeline.cascade import crop_convention
from gesturekit.pipeline.predictions import HandPrediction
from gesturekit.runtime.loading import resolve_model_file
from gesturekit.runtime.torch_backend import GraphedForward, padded_batch_size

CROP_CHUNK = 64
"""Crops resized at once (each takes a copy of its frame)."""
MAX_BATCH = 256
"""Largest batch one model call (and one CUDA graph) takes; larger batches run in chunks."""
MAX_WEIGHT_BITS = 22
INT16_LIMIT = 1 << 15
"""The fixed-point weights' largest scale and the bound they stay under (torchvision's uint8 resize)."""
HAND = "hand"
"""The verifier class whose probability rescores a candidate (as ``runtime.verifier``)."""


def _normaliser(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel factor and offset taking 0-255 values to ``normalize``'s output."""
    scale = torch.tensor([1 / (255 * s) for s in STD], device=device).view(1, 3, 1, 1)
    offset = torch.tensor([m / s for m, s in zip(MEAN, STD)], device=device).view(1, 3, 1, 1)
    return scale, offset


@dataclass(frozen=True)
class LoadedModel:
    """A model on the device and its checked metadata."""

    forward: GraphedForward
    metadata: dict[str, Any]

    @property
    def input_size(self) -> int:
        return int(self.metadata["input_size"])

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    def net(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Float32 outputs of normalised images [B,3,H,W] on the device, ``MAX_BATCH`` at a time."""
        parts = [self.forward(chunk) for chunk in images.split(MAX_BATCH)]
        return parts[0] if len(parts) == 1 else tuple(torch.cat(p) for p in zip(*parts))


def load_model(name_or_path: str | Path, task: str, device: torch.device, half: bool, cuda_graphs: bool) -> LoadedModel:
    """A zoo name, a model directory or a ``.pt`` checkpoint, on ``device``.

    Raises:
        GesturekitError: unknown model, no checkpoint, or metadata of another task.
    """
    path = resolve_model_file(name_or_path, "torch")
    model = load_model_from_checkpoint(path)
    metadata = check_metadata(getattr(model, "metadata", None), str(path), task)
    dtype = torch.float16 if half else torch.float32
    return LoadedModel(GraphedForward(model, device, dtype, cuda_graphs), metadata)


def crop_regions(boxes: torch.Tensor, frame_hw: tuple[int, int], crop: CropConvention) -> torch.Tensor:
    """``data.crops.widen_box`` on many boxes: [M,4] frame pixels -> integer regions [M,4] (float64).

    Rounds half to even as Python's ``round`` does; float64 keeps the rounding of the CPU path.
    """
    height, width = frame_hw
    b = boxes.double()
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w, h = (b[:, 2] - b[:, 0]) * crop.enlarge_ratio, (b[:, 3] - b[:, 1]) * crop.enlarge_ratio
    if crop.square:
        w = h = torch.maximum(w, h)
    margin = crop.margin_px
    x1 = (cx - w / 2 - margin).round().clamp(0, width - 2)
    y1 = (cy - h / 2 - margin).round().clamp(0, height - 2)
    x2 = torch.minimum(torch.maximum((cx + w / 2 + margin).round(), x1 + 1), torch.full_like(x1, width - 1))
    y2 = torch.minimum(torch.maximum((cy + h / 2 + margin).round(), y1 + 1), torch.full_like(y1, height - 1))
    return torch.stack([x1, y1, x2, y2], 1)


def resize_filters(starts: torch.Tensor, ends: torch.Tensor, length: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per line k, the fixed-point filter of torchvision's antialiased uint8 resize taking pixels
    ``starts[k]:ends[k]`` of a line of ``length`` to ``size`` pixels, as a matrix, and its bits.

    The integer weights are those of ``runtime.preprocess`` (the triangle filter widened by the scale
    when shrinking, normalised with a sum taken tap by tap as torchvision's kernel does, scaled by the
    largest power of two that keeps them in int16), so the device resizes bit for bit as the CPU path.
    Built with a fixed number of tensor operations and no wait on the device, whatever the lines.

    Returns:
        [K, size, length] integer weights in ``exact_dtype(length, size)`` (zero outside each line's pixels)
        and int64 bits [K].
    """
    device, f64 = starts.device, torch.float64
    first_pixel, count_in = starts.long(), (ends - starts).long()
    in_size = count_in.double()[:, None]
    scale = in_size / size
    support = torch.where(scale >= 1.0, scale, 1.0)
    inv_scale = torch.where(scale >= 1.0, 1.0 / scale, 1.0)
    centers = scale * (torch.arange(size, device=device, dtype=f64) + 0.5)
    first = (centers - support + 0.5).long().clamp(min=0)  # C's (int) truncates toward zero
    taps_of = torch.minimum((centers + support + 0.5).long(), count_in[:, None]) - first
    taps = torch.arange(int(2 * max(length / size, 1.0)) + 3, device=device)  # at least any line's taps
    weights = (1.0 - ((taps + first[..., None] - centers[..., None] + 0.5) * inv_scale[..., None]).abs()).clamp(min=0.0)
    weights = weights * (taps < taps_of[..., None])
    total = torch.zeros_like(weights[..., 0])
    for tap in range(len(taps)):  # in torchvision's order: the rounding of the sum decides the integer weights
        total += weights[..., tap]
    weights = torch.where(total[..., None] != 0, weights / total[..., None], weights)
    largest = weights.flatten(1).amax(1)
    # the largest power of two keeping every weight in int16 (the condition holds for the first few powers only)
    powers = torch.pow(2.0, torch.arange(1, MAX_WEIGHT_BITS + 1, device=device, dtype=f64))
    bits = ((0.5 + largest[:, None] * powers).long() < INT16_LIMIT).sum(1)
    fixed = (0.5 + weights * torch.pow(2.0, bits.double())[:, None, None]).long()
    index = first_pixel[:, None, None] + torch.minimum(first[..., None] + taps, count_in[:, None, None] - 1)
    dtype = exact_dtype(length, size)
    matrix = torch.zeros((len(starts), size, length), device=device, dtype=dtype)
    return matrix.scatter_add_(2, index, fixed.to(dtype)), bits


def exact_dtype(length: int, size: int) -> torch.dtype:
    """The dtype whose matrix products give the fixed-point sums of resizing at most ``length`` pixels to ``size``
    exactly: float32 while every sum (255 times the weights' total, about ``2**bits``) stays under 2**24, which
    holds up to shrinking 4 times (bits <= 16; ``tests/test_gpu_cascade.py`` checks it), and float32 products
    are not TF32; else float64."""
    return torch.float32 if length <= 4 * size and torch.get_float32_matmul_precision() == "highest" \
        else torch.float64


def fixed_point(sums: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Fixed-point sums [K, ...] -> 8-bit values: ``(sum + 2**(bits-1)) >> bits``, clamped to 0-255."""
    unit = torch.pow(2.0, bits.to(sums.dtype)).view(-1, *[1] * (sums.dim() - 1))
    return torch.floor((sums + unit / 2) / unit).clamp_(0, 255)


def resize_frames(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Float 0-255 images [B,3,H,W] -> [B,3,height,width]: torchvision's uint8 antialiased resize bit for bit
    (``runtime.preprocess.resize``): the horizontal pass, rounded to 8 bits, then the vertical one."""
    in_h, in_w = images.shape[-2:]
    if width != in_w:
        cols, bits = _line_filter(in_w, width, images.device, torch.get_float32_matmul_precision())
        images = fixed_point(images.to(cols.dtype) @ cols.T, bits).to(images.dtype)
    if height != in_h:
        rows, bits = _line_filter(in_h, height, images.device, torch.get_float32_matmul_precision())
        images = fixed_point(rows @ images.to(rows.dtype), bits).to(images.dtype)
    return images


@lru_cache(maxsize=32)
def _line_filter(length: int, size: int, device: torch.device, _precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``resize_filters`` of a whole line, kept per geometry (a stream's frames share one) and float32
    precision (which decides its dtype)."""
    starts = torch.zeros(1, device=device, dtype=torch.long)
    matrix, bits = resize_filters(starts, starts + length, length, size)
    return matrix[0], bits


def resize_crops(images: torch.Tensor, frame: torch.Tensor, regions: torch.Tensor, size: int) -> torch.Tensor:
    """The crops ``images[frame[k], :, y1:y2, x1:x2]`` resized to ``size x size`` as ``resize_frames`` resizes
    each crop alone: one window as large as the largest crop is gathered per crop, and each pass is a
    product with ``resize_filters``' matrices, zero outside the crop.

    Args:
        images: float [B,3,H,W] 0-255; frame: [K] indices into it; regions: [K,4] integer ``x1, y1, x2, y2``.
    """
    height, width = images.shape[-2:]
    regions = regions.long()
    window_h, window_w = (int(v) for v in (regions[:, 2:] - regions[:, :2]).amax(0).tolist()[::-1])
    top = regions[:, 1].clamp(max=height - window_h)
    left = regions[:, 0].clamp(max=width - window_w)
    ys = top[:, None] + torch.arange(window_h, device=images.device)
    xs = left[:, None] + torch.arange(window_w, device=images.device)
    windows = images.permute(0, 2, 3, 1)[frame[:, None, None], ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)
    rows, row_bits = resize_filters(regions[:, 1] - top, regions[:, 3] - top, window_h, size)
    cols, col_bits = resize_filters(regions[:, 0] - left, regions[:, 2] - left, window_w, size)
    across = fixed_point(windows.to(cols.dtype) @ cols[:, None].transpose(-1, -2), col_bits)
    return fixed_point(rows[:, None] @ across.to(rows.dtype), row_bits).to(images.dtype)


def rank_in_group(groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """The position of each element among the elements of its group, for ``groups`` sorted ascending."""
    counts = torch.bincount(groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(len(groups), device=groups.device) - starts[groups]


@dataclass
class Hands:
    """The hands of a batch of frames, on the device: one row each, grouped by frame, best first."""

    frame: torch.Tensor
    """[M] frame index in the batch."""
    boxes: torch.Tensor
    """[M,4] frame pixels."""
    scores: torch.Tensor
    """[M]."""
    labels: torch.Tensor
    """[M] detector class index."""

    def select(self, keep: torch.Tensor) -> Hands:
        return Hands(self.frame[keep], self.boxes[keep], self.scores[keep], self.labels[keep])


class GpuCascade:
    """Detector (+ verifier) -> classifier -> confirmation on batches of frames, on one torch device.

    Callable like ``pipeline.cascade.Cascade`` (frames in, per frame its confirmed ``HandPrediction`` list
    out, boxes in frame pixels, best first), so ``CascadeApp`` runs it unchanged; :meth:`run` takes
    frames already on the device.

    Args:
        detector, verifier, classifier: loaded models (``load_model``); ``verifier``/``classifier`` optional.
        floor: the lowest score kept (``Cascade.floor``); score_threshold: the score a hand is kept at
            without confirmation; the other arguments as ``Cascade`` and ``runtime.verifier.HandVerifier``.
    """

    def __init__(self, detector: LoadedModel, verifier: LoadedModel | None, classifier: LoadedModel | None, *,
                 device: torch.device, score_threshold: float, floor: float, crop: CropConvention,
                 min_crop_size: int, confirm_probability: float, catch_all: str, candidate_threshold: float,
                 trust_threshold: float, verifier_weight: float, refine_boxes: RefineBoxes) -> None:
        post = dict(detector.metadata["postprocessing"])
        if post.get("clustering", "nms") != "nms":
            raise GesturekitError(f"GPU cascade: the detector's clustering {post['clustering']!r} is not supported "
                                  "(nms only)")
        if verifier is not None and HAND not in verifier.classes:
            raise GesturekitError(f"verifier: classes {verifier.classes} have no {HAND!r} class")
        self.detector, self.verifier, self.classifier = detector, verifier, classifier
        self.device = device
        self.nms_iou = float(post.get("nms_iou_threshold", 0.5))
        self.max_detections = int(post.get("max_detections", 100))
        self.minimum_box_size = float(post.get("minimum_box_size", 0.0))
        self.pre_cluster_topk = int(post.get("pre_cluster_topk", 1000))
        self.candidate_floor = candidate_threshold if verifier is not None else floor
        self.score_threshold, self.floor = score_threshold, floor
        self.crop, self.min_crop_size = crop, min_crop_size
        self.confirm_probability = confirm_probability
        self.catch_all = classifier.classes.index(catch_all) if classifier and catch_all in classifier.classes else -1
        self.trust_threshold, self.verifier_weight, self.refine_boxes = trust_threshold, verifier_weight, refine_boxes
        self.verifier_crop = crop_convention(verifier.metadata["crop"]) if verifier else None
        self.scale, self.offset = _normaliser(device)

    @classmethod
    def from_config(cls, config: AppConfig, device: str = "cuda", cuda_graphs: bool = True) -> GpuCascade:
        """The cascade ``config`` describes (its models, or the torch defaults, ``models.zoo.default_models``) on ``device``;
        FP16 on a CUDA device unless ``primary.precision`` is fp32."""
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise GesturekitError(f"device {device!r}: CUDA is not available")
        primary, secondary = config.primary, config.secondary
        half = dev.type == "cuda" and primary.precision != "fp32"
        defaults = default_models("torch", dev.type)
        detector = load_model(primary.detector or defaults["detector"], "detection", dev, half, cuda_graphs)
        verifier = (load_model(primary.verifier or defaults["verifier"], "classification", dev, half, cuda_graphs)
                    if primary.verify else None)
        classifier = (load_model(secondary.classifier or defaults["classifier"], "classification", dev, half,
                                 cuda_graphs) if secondary.enabled else None)
        floor = primary.score_threshold
        if classifier is not None and secondary.confirm_threshold is not None:
            floor = min(floor, secondary.confirm_threshold)
        crop = crop_convention(classifier.metadata["crop"] if classifier else None, secondary.margin)
        return cls(detector, verifier, classifier, device=dev, score_threshold=primary.score_threshold, floor=floor,
                   crop=crop, min_crop_size=secondary.min_crop_size, confirm_probability=secondary.confirm_probability,
                   catch_all=secondary.catch_all, candidate_threshold=primary.candidate_threshold,
                   trust_threshold=primary.trust_threshold, verifier_weight=primary.verifier_weight,
                   refine_boxes=primary.refine_boxes)

    def capture_graphs(self, frame_hw: tuple[int, int] | None = None, max_frames: int = MAX_BATCH) -> None:
        """Capture up front the CUDA graph of every shape a run can meet: the verifier's and the classifier's for
        each padded crop count up to ``MAX_BATCH`` and, for frames of ``frame_hw``, the detector's for each padded
        batch up to ``max_frames``. Left to the first batch that brings a new crop count, a capture stalls that
        batch for a second or more (a served request's latency; the host-path dip of benchmarks/gpu_cascade.py)."""
        if self.device.type != "cuda":
            return

        def powers(top: int) -> list[int]:
            return [1 << k for k in range(padded_batch_size(min(top, MAX_BATCH)).bit_length())]

        for model in (self.verifier, self.classifier):
            if model is not None:
                for count in powers(MAX_BATCH):
                    model.forward.capture((count, 3, model.input_size, model.input_size))
        if frame_hw is not None:
            _, _, padded_h, padded_w, _ = letterbox_geometry(*frame_hw, self.detector.input_size, PAD_STRIDE,
                                                             square=False)
            for count in powers(max_frames):
                self.detector.forward.capture((count, 3, padded_h, padded_w))

    def graph_counts(self) -> dict[str, int]:
        """The CUDA graphs each model holds, by role."""
        models = {"detector": self.detector, "verifier": self.verifier, "classifier": self.classifier}
        return {name: model.forward.graph_count for name, model in models.items() if model is not None}

    # --- host side ---------------------------------------------------------------------------------------

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[HandPrediction]]:
        """Args: frames uint8 RGB [H,W,3] (sizes may differ: each size runs as its own batch)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(frame.shape, []).append(i)
        out: list[list[HandPrediction]] = [[] for _ in frames]
        for indices in groups.values():
            for i, hands in zip(indices, self.run(self.upload([frames[i] for i in indices]))):
                out[i] = hands
        return out

    def upload(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Frames of one size -> uint8 [B,H,W,3] on the device, through pinned memory without waiting on CUDA."""
        if self.device.type != "cuda":
            return torch.from_numpy(np.stack(frames))
        staging = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=True)
        np.stack(frames, out=staging.numpy())
        return staging.to(self.device, non_blocking=True)

    def run(self, frames: torch.Tensor) -> list[list[HandPrediction]]:
        """Args: frames uint8 [B,H,W,3] RGB on the device. Returns per frame its confirmed hands, best first."""
        with torch.inference_mode():
            rows = self.hands_table(frames).cpu().numpy()
        out: list[list[HandPrediction]] = [[] for _ in range(len(frames))]
        classes = self.classifier.classes if self.classifier else []
        for frame, x1, y1, x2, y2, score, gesture, probability in rows.tolist():
            named = gesture >= 0
            out[int(frame)].append(HandPrediction(
                (x1, y1, x2, y2), score, classes[int(gesture)] if named else None, probability if named else None))
        return out

    # --- device side -------------------------------------------------------------------------------------

    def hands_table(self, frames: torch.Tensor) -> torch.Tensor:
        """The whole cascade on the device: [M,8] float rows ``frame, x1, y1, x2, y2, score, gesture, probability``
        (gesture -1: not classified), grouped by frame, best first."""
        batch, height, width = frames.shape[:3]
        images = frames.permute(0, 3, 1, 2).float()
        hands = self.detect_hands(images)
        if self.verifier is not None:
            hands = self.verify_hands(images, hands)
        gesture = torch.full_like(hands.scores, -1.0)
        probability = torch.zeros_like(hands.scores)
        if self.classifier is not None and len(hands.scores):
            regions = crop_regions(hands.boxes, (height, width), self.crop)
            sides = torch.minimum(regions[:, 2] - regions[:, 0], regions[:, 3] - regions[:, 1])
            big = torch.nonzero(sides >= self.min_crop_size).flatten()
            if len(big):
                probs = self.classify_crops(self.classifier, images, hands.frame[big], regions[big])[0]
                best, label = probs.max(1)
                gesture[big], probability[big] = label.float(), best
        confirmed = (hands.scores >= self.score_threshold) | (
            (hands.scores >= self.floor) & (gesture >= 0) & (gesture != self.catch_all)
            & (probability >= self.confirm_probability))
        table = torch.stack([hands.frame.float(), *hands.boxes.unbind(1), hands.scores, gesture, probability], 1)
        return table[confirmed]

    def detect_hands(self, images: torch.Tensor) -> Hands:
        """Letterbox (pixel-budget resize rounded to 8 bits, padded to ``PAD_STRIDE``), the detector, its
        post-processing over the whole batch (``models.postprocess`` per frame), boxes mapped to the frames."""
        batch, _, height, width = images.shape
        new_h, new_w, padded_h, padded_w, scale = letterbox_geometry(height, width, self.detector.input_size,
                                                                     PAD_STRIDE, square=False)
        resized = resize_frames(images, new_h, new_w)
        canvas = (-self.offset).expand(batch, 3, padded_h, padded_w).contiguous()
        canvas[:, :, :new_h, :new_w] = resized * self.scale - self.offset
        boxes, scores = self.detector.net(canvas)
        num_classes = scores.shape[-1]
        flat = scores.reshape(batch, -1)
        top, index = flat.topk(min(self.pre_cluster_topk, flat.shape[1]), dim=1)
        anchor_boxes = boxes.gather(1, (index // num_classes).unsqueeze(-1).expand(-1, -1, 4))
        sizes = anchor_boxes[..., 2:] - anchor_boxes[..., :2]
        keep = (top > self.candidate_floor) & (sizes >= self.minimum_box_size).all(-1)
        frame, slot = torch.nonzero(keep, as_tuple=True)
        hands = Hands(frame, anchor_boxes[frame, slot], top[frame, slot], index[frame, slot] % num_classes)
        hands = self._nms(hands, num_classes, batch)
        hands = hands.select(rank_in_group(hands.frame, batch) < self.max_detections)
        frame_boxes = hands.boxes / scale
        frame_boxes[:, 0::2] = frame_boxes[:, 0::2].clamp(0, width)
        frame_boxes[:, 1::2] = frame_boxes[:, 1::2].clamp(0, height)
        hands.boxes = frame_boxes
        return hands

    def verify_hands(self, images: torch.Tensor, hands: Hands) -> Hands:
        """``runtime.verifier.HandVerifier`` and ``HandDetector``'s merge on every candidate of the batch:
        doubtful ones rescored, those ``refine_boxes`` names moved to the box head's box, the floor, NMS again."""
        assert self.verifier is not None and self.verifier_crop is not None
        height, width = images.shape[-2:]
        if len(hands.scores):
            regions = crop_regions(hands.boxes, (height, width), self.verifier_crop)
            doubtful = hands.scores < self.trust_threshold
            sharper = self.verifier.input_size / (regions[:, 2:] - regions[:, :2]).amax(1).clamp(min=1) \
                > self._input_scale(height, width)
            moves = {"small": sharper, "all": torch.ones_like(doubtful), "doubtful": doubtful,
                     "none": torch.zeros_like(doubtful)}[self.refine_boxes]
            cropped = torch.nonzero(doubtful | moves).flatten()
            if len(cropped):
                outputs = self.classify_crops(self.verifier, images, hands.frame[cropped], regions[cropped])
                p_hand = outputs[0][:, self.verifier.classes.index(HAND)]
                w = self.verifier_weight
                old = hands.scores[cropped]
                rescored = old.clamp(min=0) ** (1 - w) * p_hand.clamp(min=0) ** w
                hands.scores[cropped] = torch.where(doubtful[cropped], rescored, old)
                if len(outputs) > 1:
                    region = regions[cropped]
                    head = outputs[1].double()
                    xs = (region[:, :1] + head[:, 0::2].sort(1).values * (region[:, 2:3] - region[:, :1])).clamp(0, width)
                    ys = (region[:, 1:2] + head[:, 1::2].sort(1).values * (region[:, 3:4] - region[:, 1:2])).clamp(0, height)
                    moved = torch.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1).to(hands.boxes.dtype)
                    hands.boxes[cropped] = torch.where(moves[cropped, None], moved, hands.boxes[cropped])
        hands = hands.select(torch.nonzero(hands.scores >= self.floor).flatten())
        return self._nms(hands, len(self.detector.classes), len(images))

    def classify_crops(self, model: LoadedModel, images: torch.Tensor, frame: torch.Tensor, regions: torch.Tensor
                 ) -> tuple[torch.Tensor, ...]:
        """``model`` on the crops ``images[frame][:, y1:y2, x1:x2]`` of ``regions`` (``resize_crops``)."""
        crops = torch.cat([resize_crops(images, frame[i:i + CROP_CHUNK], regions[i:i + CROP_CHUNK], model.input_size)
                           for i in range(0, len(frame), CROP_CHUNK)])
        return model.net(crops * self.scale - self.offset)

    def _nms(self, hands: Hands, num_classes: int, batch: int) -> Hands:
        """Per frame and class NMS over the whole batch; rows grouped by frame, best first."""
        keep = batched_nms(hands.boxes, hands.scores, hands.frame * num_classes + hands.labels, self.nms_iou)
        keep = keep[torch.sort(hands.frame[keep], stable=True).indices]
        return hands.select(keep)

    def _input_scale(self, height: int, width: int) -> float:
        return letterbox_geometry(height, width, self.detector.input_size, PAD_STRIDE, square=False)[4]
