"""Check a KITTI dataset directory and report every problem, each naming its file (and line)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from gesturekit.data.formats.kitti import (
    format_number,
    kitti_splits,
    label_lines,
    parse_kitti_line,
    read_groups,
    split_image_names,
)
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_kitti`.

    Attributes:
        problems: one line each, ``file[:line]: message``.
        images, boxes: counts of images found and of boxes parsed.
        classes: class -> number of boxes.
        splits: split name -> number of images listed.
    """

    root: Path
    problems: list[str] = field(default_factory=list)
    images: int = 0
    boxes: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def decode_size(path: Path) -> tuple[int, int]:
    """Decode an image fully (JPEG at 1/8 scale, which still reads all of it); return its size."""
    try:
        with Image.open(path) as im:
            size = im.size
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
            return size
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable image
        raise GesturekitError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None


def _check_labels(
    label_path: Path, size: tuple[int, int] | None, classes: Sequence[str] | None, report: ValidationReport
) -> None:
    try:
        lines = label_lines(label_path)
    except GesturekitError as exc:
        report.problems.append(str(exc))
        return
    for i, line in lines:
        where = f"{label_path}:{i}"
        try:
            box = parse_kitti_line(line, where)
        except GesturekitError as exc:
            report.problems.append(str(exc))
            continue
        report.boxes += 1
        report.classes[box.label] += 1
        if classes is not None and box.label not in classes:
            expected = ", ".join(classes)
            report.problems.append(f"{where}: unknown class {box.label!r} (expected one of {expected})")
        if size is not None:
            width, height = size
            if box.x1 < 0 or box.y1 < 0 or box.x2 > width or box.y2 > height:
                coords = ",".join(format_number(v) for v in (box.x1, box.y1, box.x2, box.y2))
                report.problems.append(f"{where}: box {coords} lies outside the {width}x{height} image")


def _check_splits(root: Path, names: set[str], report: ValidationReport) -> None:
    splits = kitti_splits(root)
    if not splits:
        report.problems.append(f"{root / 'splits'}: no <split>.txt files (trainers read splits/train.txt)")
    owner: dict[str, str] = {}
    for split in splits:
        split_file = root / "splits" / f"{split}.txt"
        try:
            entries = split_image_names(root, split)
        except GesturekitError as exc:
            report.problems.append(str(exc))
            continue
        seen: set[str] = set()
        for i, name in entries:
            where = f"{split_file}:{i}"
            if name not in names:
                report.problems.append(f"{where}: image {name!r} not found in images/")
            elif name in seen:
                report.problems.append(f"{where}: image {name!r} listed twice")
            elif owner.setdefault(name, split) != split:
                report.problems.append(f"{where}: image {name!r} also in split {owner[name]!r}")
            seen.add(name)
        report.splits[split] = len(entries)


def validate_kitti(root: str | Path, classes: Sequence[str] | None = None) -> ValidationReport:
    """Check every image, label line, split file and ``groups.json`` of a KITTI dataset.

    Args:
        root: the dataset directory.
        classes: the allowed class names; ``None`` allows any.

    Returns:
        The report; ``report.ok`` is true when no problem was found.
    """
    root = Path(root)
    if not root.is_dir():
        raise GesturekitError(f"{root}: not a folder")
    report = ValidationReport(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        report.problems.append(f"{images_dir}: missing (not a KITTI dataset)")
        return report
    files = sorted(p for p in images_dir.iterdir() if not p.name.startswith("."))
    images = []
    for path in files:
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            report.problems.append(f"{path}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not images:
        report.problems.append(f"{images_dir}: no images")
    report.images = len(images)
    by_stem: dict[str, Path] = {}
    for path in images:
        try:
            size: tuple[int, int] | None = decode_size(path)
        except GesturekitError as exc:
            report.problems.append(str(exc))
            size = None
        if path.stem in by_stem:
            other = by_stem[path.stem].name
            report.problems.append(f"{path}: shares the label file {path.stem}.txt with {other}")
            continue
        by_stem[path.stem] = path
        label_path = labels_dir / f"{path.stem}.txt"
        if label_path.is_file():
            _check_labels(label_path, size, classes, report)
        else:
            report.problems.append(f"{label_path}: missing (label file of {path.name}; empty when no hands)")
    if labels_dir.is_dir():
        for label_path in sorted(labels_dir.glob("*.txt")):
            if label_path.stem not in by_stem:
                report.problems.append(f"{label_path}: no image {label_path.stem}.* in images/")
    names = {p.name for p in images}
    _check_splits(root, names, report)
    try:
        groups = read_groups(root)
    except GesturekitError as exc:
        report.problems.append(str(exc))
        groups = {}
    for name in groups:
        if name not in names:
            report.problems.append(f"{root / 'groups.json'}: {name!r}: no such image in images/")
    return report
