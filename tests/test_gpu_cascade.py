"""The batched GPU cascade's code on device=cpu: its crop regions against the CPU path's."""

from __future__ import annotations


import numpy as np
import torch

from gesturekit.config.specs import CropConvention
from gesturekit.data.crops import widen_box
from gesturekit.pipeline.gpu_cascade import crop_regions


def test_crop_regions_are_widen_box() -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 600, (200, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 300, (200, 2))], 1).astype(np.float32)
    for crop in (CropConvention(margin_px=0, enlarge_ratio=2.0, square=True),
                 CropConvention(margin_px=7.5, enlarge_ratio=1.0, square=False)):
        got = crop_regions(torch.from_numpy(boxes), (480, 640), crop).long().tolist()
        expected = [list(widen_box(tuple(map(float, b)), (640, 480), crop.margin_px, crop.enlarge_ratio, crop.square))
                    for b in boxes]
        assert got == expected
