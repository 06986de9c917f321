"""YOLO txt labels (``class cx cy w h``, normalised to the image) with ``data.yaml`` class names.

Layouts read: ``ROOT/<split>/images`` + ``ROOT/<split>/labels`` (Roboflow export),
``ROOT/images/<split>`` + ``ROOT/labels/<split>`` (Ultralytics), or ``ROOT/images`` +
``ROOT/labels`` without splits (the split ``all``). The split folder ``valid`` is the split ``val``. An image without a label file has no boxes; a label file without an
image is an error. The writer produces the Roboflow layout and ``data.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from gesturekit.data.formats.kitti import (
    NO_SPLIT,
    check_box,
    check_split_name,
    format_number,
    is_image,
    parse_number,
    image_size,
    label_lines,
    link_or_copy,
    read_text,
    staged_output,
    unique_image_names,
)
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError

YOLO_FIELDS = ("class", "cx", "cy", "w", "h")
_EPS = 1e-6


def split_name(folder: str) -> str:
    return "val" if folder == "valid" else folder


def split_folder(split: str) -> str:
    return "valid" if split == "val" else split


def read_names(path: Path) -> list[str]:
    """Class names from ``data.yaml``'s ``names`` (a list, or a mapping index -> name)."""
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise GesturekitError(f"{path}{where}: invalid YAML") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise GesturekitError(f"{path}: names: keys must be the indices 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise GesturekitError(f"{path}: names: expected a non-empty list of class names")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise GesturekitError(f"{path}: names[{i}]: {name!r} is not a class name (quote it)")
    return names


def parse_yolo_line(line: str, where: str, num_classes: int) -> tuple[int, float, float, float, float]:
    """Parse ``class cx cy w h``; raises naming ``where`` unless the values are normalised."""
    fields = line.split()
    if len(fields) != len(YOLO_FIELDS):
        raise GesturekitError(f"{where}: expected 5 fields (class cx cy w h), got {len(fields)}")
    values = [parse_number(token, where, name) for token, name in zip(fields, YOLO_FIELDS)]
    cls, cx, cy, w, h = values
    if not cls.is_integer() or not 0 <= cls < num_classes:
        raise GesturekitError(f"{where}: class {fields[0]!r} is not an index 0..{num_classes - 1}")
    for name, token, value in zip(YOLO_FIELDS[1:], fields[1:], values[1:]):
        if not -_EPS <= value <= 1 + _EPS:
            raise GesturekitError(f"{where}: {name} {token} is not in [0, 1] (YOLO values are normalised)")
    if w <= 0 or h <= 0:
        raise GesturekitError(f"{where}: w and h must be > 0")
    return int(cls), cx, cy, w, h


def read_yolo_labels(path: Path, names: Sequence[str], width: int, height: int) -> list[Box]:
    """Every box of a YOLO label file, in pixels of a ``width`` x ``height`` image."""
    boxes = []
    for i, line in label_lines(path):
        where = f"{path}:{i}"
        cls, cx, cy, w, h = parse_yolo_line(line, where, len(names))
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        x2, y2 = (cx + w / 2) * width, (cy + h / 2) * height
        boxes.append(check_box(names[cls], x1, y1, x2, y2, where))
    return boxes


def _split_dirs(root: Path) -> dict[str, tuple[Path, Path]]:
    """split name -> (images folder, labels folder) for either supported layout."""
    pairs = {
        split_name(d.name): (d / "images", d / "labels")
        for d in sorted(root.iterdir()) if d.is_dir() and (d / "images").is_dir()
    }
    if (root / "images").is_dir():
        pairs.update({
            split_name(d.name): (d, root / "labels" / d.name)
            for d in sorted((root / "images").iterdir()) if d.is_dir()
        })
        if not pairs and any(is_image(p) for p in (root / "images").iterdir()):
            pairs[NO_SPLIT] = (root / "images", root / "labels")
    return pairs


def _read_split(images_dir: Path, labels_dir: Path, names: Sequence[str]) -> list[ImageAnnotation]:
    images = sorted(p for p in images_dir.iterdir() if is_image(p))
    by_stem: dict[str, Path] = {}
    for image in images:
        if image.stem in by_stem:
            raise GesturekitError(f"{image}: same stem as {by_stem[image.stem].name}, so the same label file")
        by_stem[image.stem] = image
    labels = sorted(labels_dir.glob("*.txt")) if labels_dir.is_dir() else []
    for label in labels:
        if label.stem not in by_stem:
            raise GesturekitError(f"{label}: label file without an image in {images_dir}")
    annotations = []
    for image in images:
        width, height = image_size(image)
        label = labels_dir / f"{image.stem}.txt"
        boxes = read_yolo_labels(label, names, width, height) if label.is_file() else []
        annotations.append(ImageAnnotation(image, width, height, boxes))
    return annotations


def read_yolo(root: str | Path) -> dict[str, list[ImageAnnotation]]:
    """Read a YOLO dataset: ``data.yaml`` names and its split folders.

    Returns:
        split name (``train``, ``val``, ``test``) -> annotations in pixels (no groups).
    """
    root = Path(root)
    yaml_path = next((p for p in (root / "data.yaml", root / "data.yml") if p.is_file()), root / "data.yaml")
    names = read_names(yaml_path)
    dirs = _split_dirs(root) if root.is_dir() else {}
    if not dirs:
        raise GesturekitError(f"{root}: no <split>/images, images/<split> or images/ folder of images")
    return {split: _read_split(images, labels, names) for split, (images, labels) in dirs.items()}


def format_yolo_line(box: Box, index: int, width: int, height: int, where: str) -> str:
    """``class cx cy w h`` with 6 decimals; a box whose centre is off the image raises."""
    box = check_box(box.label, box.x1, box.y1, box.x2, box.y2, where)
    cx, cy = (box.x1 + box.x2) / 2 / width, (box.y1 + box.y2) / 2 / height
    values = (cx, cy, box.width / width, box.height / height)
    if not all(0 <= v <= 1 for v in values):
        coords = ",".join(format_number(v) for v in (box.x1, box.y1, box.x2, box.y2))
        raise GesturekitError(f"{where}: box {coords} does not fit the {width}x{height} image")
    return f"{index} " + " ".join(f"{v:.6f}" for v in values)


def write_yolo(
    splits: Mapping[str, Sequence[ImageAnnotation]],
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a YOLO dataset (``<split>/images``, ``<split>/labels``, ``data.yaml``).

    Args:
        splits: split name -> images; the split ``val`` is written to the folder ``valid``.
        names: class names in index order; by default the sorted labels that occur.

    Returns:
        The path of ``data.yaml``.
    """
    out_dir = Path(out_dir)
    labels = sorted({b.label for anns in splits.values() for a in anns for b in a.boxes})
    names = list(names) if names is not None else labels
    index = {name: i for i, name in enumerate(names)}
    missing = [label for label in labels if label not in index]
    if missing:
        raise GesturekitError(f"class {missing[0]!r} is not in the class names {names}")
    planned = []
    for split, anns in splits.items():
        check_split_name(split)
        folder = split_folder(split)
        file_names = unique_image_names([a.image for a in anns])
        for ann in anns:
            lines = [
                format_yolo_line(b, index[b.label], ann.width, ann.height, str(ann.image)) for b in ann.boxes
            ]
            planned.append((folder, file_names[ann.image], ann.image, lines))
    folders = [split_folder(s) for s in splits]
    data = {split_name(f): f"{f}/images" for f in folders}
    data.update(nc=len(names), names=names)
    with staged_output(out_dir, [*folders, "data.yaml"], overwrite) as stage:
        for folder in folders:
            (stage / folder / "images").mkdir(parents=True)
            (stage / folder / "labels").mkdir(parents=True)
        for folder, name, image, lines in planned:
            link_or_copy(image, stage / folder / "images" / name)
            label_text = "".join(f"{x}\n" for x in lines)
            (stage / folder / "labels" / f"{Path(name).stem}.txt").write_text(label_text)
        (stage / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out_dir / "data.yaml"
