"""HaGRID reader: ``ROOT/annotations/<split>/<gesture>.json`` and ``ROOT/frames/<image_id>.jpg``.

Each JSON file maps ``image_id`` to ``{"bboxes": [[x, y, w, h], ...], "labels": [...],
"user_id": ...}`` with boxes normalised to the image, top-left corner first. Every box of every
label is kept, ``no_gesture`` (a second, idle hand) included.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gesturekit.data.formats.kitti import check_box, image_size, read_text
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES



def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise GesturekitError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GesturekitError(f"{path}: expected an object of image_id -> annotation")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _boxes(entry: Any, width: int, height: int, where: str) -> list[Box]:
    """The pixel boxes of one image's entry; any malformed part raises naming ``where``."""
    if not isinstance(entry, dict):
        raise GesturekitError(f"{where}: expected an object with bboxes and labels")
    bboxes, labels = entry.get("bboxes"), entry.get("labels")
    if not isinstance(bboxes, list) or not isinstance(labels, list):
        raise GesturekitError(f"{where}: 'bboxes' and 'labels' must both be lists")
    if len(bboxes) != len(labels):
        raise GesturekitError(f"{where}: {len(bboxes)} bboxes but {len(labels)} labels")
    boxes = []
    for k, (bbox, label) in enumerate(zip(bboxes, labels)):
        at = f"{where}.bboxes[{k}]"
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise GesturekitError(f"{at}: expected [x, y, w, h] numbers, got {bbox!r}")
        if not isinstance(label, str):
            raise GesturekitError(f"{where}.labels[{k}]: expected a string, got {label!r}")
        x, y, w, h = bbox
        boxes.append(check_box(label, x * width, y * height, (x + w) * width, (y + h) * height, at))
    return boxes


def _frame(frames_dir: Path, image_id: str, where: str) -> Path:
    for suffix in sorted(IMAGE_SUFFIXES, key=lambda s: s != ".jpg"):  # HaGRID's own suffix first
        path = frames_dir / f"{image_id}{suffix}"
        if path.is_file():
            return path
    raise GesturekitError(f"{where}: frame {image_id}.jpg not found in {frames_dir}")


def read_hagrid(root: str | Path) -> dict[str, list[ImageAnnotation]]:
    """Read HaGRID annotations and frames.

    Args:
        root: folder holding ``annotations/<split>/*.json`` and ``frames/``.

    Returns:
        split name (the annotation folder: ``test``, ``val``, ...) -> one annotation per
        image id, boxes in pixels, group = ``user_id``.
    """
    root = Path(root)
    ann_dir, frames_dir = root / "annotations", root / "frames"
    split_dirs = sorted(p for p in ann_dir.glob("*") if p.is_dir() and any(p.glob("*.json")))
    if not split_dirs:
        raise GesturekitError(f"{root}: no annotations/<split>/<gesture>.json found (not HaGRID)")
    seen: dict[str, Path] = {}
    splits: dict[str, list[ImageAnnotation]] = {}
    for split_dir in split_dirs:
        annotations = []
        for path in sorted(split_dir.glob("*.json")):
            for image_id, entry in _load_json(path).items():
                where = f"{path}: {image_id}"
                if image_id in seen:
                    raise GesturekitError(f"{where}: image id also annotated in {seen[image_id]}")
                seen[image_id] = path
                frame = _frame(frames_dir, image_id, where)
                width, height = image_size(frame)
                boxes = _boxes(entry, width, height, where)
                user = entry.get("user_id")
                group = None if user is None else str(user)
                annotations.append(ImageAnnotation(frame, width, height, boxes, group))
        splits[split_dir.name] = annotations
    return splits
