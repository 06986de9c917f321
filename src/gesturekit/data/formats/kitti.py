"""KITTI detection labels and the KITTI dataset directory every trainer reads.

A label line has the 15 KITTI fields; gesturekit only uses the class and the box and writes
``hand 0 0 0 x1 y1 x2 y2 0 0 0 0 0 0 0`` (class, truncation, occlusion, alpha, box, zeros).
The dataset directory is ``ROOT/images/<file>``, ``ROOT/labels/<stem>.txt`` (one per image,
empty for an image without hands), ``ROOT/splits/<split>.txt`` (one image file name a line) and
``ROOT/groups.json`` (image file name -> group, e.g. the EgoHands video).

This module also holds the file helpers the other writers share: image sizes from the header
only, hard-link-or-copy, and unique output file names.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES

KITTI_FIELDS = 15
DATASET_ENTRIES = ("images", "labels", "splits", "groups.json")
NO_SPLIT = "all"  # the split of a source that has no splits of its own
UNLISTED = "unlisted"  # the split of a source's images that its split files do not list


# ---------------------------------------------------------------- shared file helpers


def image_size(path: Path) -> tuple[int, int]:
    """Return ``(width, height)`` of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise GesturekitError(f"{path}: image not found") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable image
        raise GesturekitError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None


def is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def read_text(path: Path) -> str:
    """Read a UTF-8 text file; a missing or binary file is a GesturekitError naming it."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise GesturekitError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise GesturekitError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise GesturekitError(f"{path}: cannot read ({exc.strerror})") from None


def format_number(value: float) -> str:
    """Print a coordinate with at most 2 decimals and no trailing zeros (``403``, ``12.5``)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to the new file ``dst``, or copy it when linking is impossible."""
    if not src.is_file():
        raise GesturekitError(f"{src}: image not found")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _safe_name(name: str) -> str:
    return re.sub(r"\s+", "_", name)


def unique_image_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Give every distinct source image an output file name whose stem is unique.

    Names are kept when they are already unique (compared without case, by stem, since the label
    file is ``<stem>.txt``); colliding names get their parent folders as a prefix
    (``CARDS_OFFICE_S_B/frame_0001.jpg`` -> ``CARDS_OFFICE_S_B_frame_0001.jpg``), then a counter.
    """
    distinct = list(dict.fromkeys(Path(p) for p in paths))
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in distinct:
        by_stem[_safe_name(path.stem).lower()].append(path)
    names: dict[Path, str] = {}
    for group in by_stem.values():
        if len(group) == 1:
            names[group[0]] = _safe_name(group[0].name)
            continue
        for depth in (1, 2, 3):
            candidates = {p: _safe_name("_".join((*p.parent.parts[-depth:], p.name))) for p in group}
            if len({Path(n).stem.lower() for n in candidates.values()}) == len(group):
                names.update(candidates)
                break
        else:
            names.update({p: f"{_safe_name(p.stem)}_{i}{p.suffix}" for i, p in enumerate(group)})
    taken = Counter(Path(n).stem.lower() for n in names.values())
    for path, name in names.items():
        if taken[Path(name).stem.lower()] > 1:
            raise GesturekitError(f"{path}: cannot give this image a unique output name ({name})")
    return names


def check_split_name(name: str) -> str:
    """A split name becomes a file or folder name: letters, digits, ``_``, ``-`` and ``.`` only."""
    if not re.fullmatch(r"[\w-][\w.-]*", name):
        raise GesturekitError(f"split name {name!r}: use letters, digits, '_', '-' or '.'")
    return name


@contextmanager
def staged_output(out_dir: Path, entries: Sequence[str], overwrite: bool) -> Iterator[Path]:
    """Build a dataset in a hidden folder inside ``out_dir``, then move its ``entries`` into place.

    Files are written there without one fsync each (which would dominate a conversion); the
    dataset appears in ``out_dir`` only once complete, and a failure leaves ``out_dir`` as it
    was. An existing dataset (any of ``entries``) is refused unless ``overwrite``, which
    replaces only those entries: other files in ``out_dir`` stay.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise GesturekitError(f"{out_dir}: exists and is not a folder")
    present = [e for e in entries if (out_dir / e).exists()]
    if present and not overwrite:
        raise GesturekitError(
            f"{out_dir}: already holds a dataset ({present[0]}); pass --overwrite or choose another folder"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".staging-"))
    except OSError as exc:
        raise GesturekitError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    try:
        yield staging
        for entry in present:
            old = out_dir / entry
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        for entry in entries:
            if (staging / entry).exists():
                os.replace(staging / entry, out_dir / entry)
    except OSError as exc:
        raise GesturekitError(f"{exc.filename or out_dir}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- label lines


def parse_number(token: str, where: str, field: str) -> float:
    """A finite float from a text field, or a GesturekitError naming ``where`` and ``field``."""
    try:
        value = float(token)
    except ValueError:
        raise GesturekitError(f"{where}: {field} is not a number: {token!r}") from None
    if not math.isfinite(value):
        raise GesturekitError(f"{where}: {field} is not finite: {token!r}")
    return value


def check_box(label: str, x1: float, y1: float, x2: float, y2: float, where: str) -> Box:
    """Return the box, or raise naming ``where`` when the label is empty or the box is empty."""
    if not isinstance(label, str) or not label.strip():
        raise GesturekitError(f"{where}: empty class name")
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise GesturekitError(f"{where}: box ({x1}, {y1}, {x2}, {y2}) is not finite")
    if x2 <= x1:
        raise GesturekitError(f"{where}: x2 ({format_number(x2)}) <= x1 ({format_number(x1)})")
    if y2 <= y1:
        raise GesturekitError(f"{where}: y2 ({format_number(y2)}) <= y1 ({format_number(y1)})")
    return Box(label, float(x1), float(y1), float(x2), float(y2))


def parse_kitti_line(line: str, where: str) -> Box:
    """Parse one KITTI label line into a box.

    Args:
        line: the 15 whitespace-separated KITTI fields.
        where: ``file:line`` put in front of any error.

    Raises:
        GesturekitError: wrong field count, a non-numeric field, ``x2 <= x1`` or ``y2 <= y1``.
    """
    fields = line.split()
    if len(fields) != KITTI_FIELDS:
        raise GesturekitError(f"{where}: expected {KITTI_FIELDS} fields, got {len(fields)}")
    names = ("truncation", "occlusion", "alpha", "x1", "y1", "x2", "y2", "height", "width",
             "length", "x", "y", "z", "rotation_y")
    values = [parse_number(tok, where, name) for tok, name in zip(fields[1:], names)]
    return check_box(fields[0], *values[3:7], where)


def format_kitti_line(box: Box, where: str = "box") -> str:
    """``class 0 0 0 x1 y1 x2 y2 0 0 0 0 0 0 0``; an unwritable box raises naming ``where``."""
    box = check_box(box.label, box.x1, box.y1, box.x2, box.y2, where)
    if any(c.isspace() for c in box.label):
        raise GesturekitError(
            f"{where}: class {box.label!r} contains whitespace, which KITTI cannot hold; "
            f"rename it, e.g. --class-map '{box.label}={_safe_name(box.label.strip())}'"
        )
    coords = " ".join(format_number(v) for v in (box.x1, box.y1, box.x2, box.y2))
    return f"{box.label} 0 0 0 {coords} 0 0 0 0 0 0 0"


def label_lines(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of a label file with their 1-based line numbers."""
    return [(i, line) for i, line in enumerate(read_text(path).split("\n"), 1) if line.strip()]


def read_kitti_labels(path: Path) -> list[Box]:
    """Read every box of a KITTI label file; the first bad line raises naming ``file:line``."""
    return [parse_kitti_line(line, f"{path}:{i}") for i, line in label_lines(path)]


# ---------------------------------------------------------------- dataset directory


def kitti_splits(root: Path) -> list[str]:
    """Names of the splits of a KITTI dataset (``ROOT/splits/<name>.txt``), sorted."""
    return sorted(p.stem for p in (Path(root) / "splits").glob("*.txt"))


def read_groups(root: Path) -> dict[str, str]:
    """``ROOT/groups.json`` (image file name -> group), or ``{}`` when absent."""
    path = Path(root) / "groups.json"
    if not path.exists():
        return {}
    try:
        groups = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise GesturekitError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
        raise GesturekitError(f"{path}: expected an object of image file name -> group name")
    return groups


def split_image_names(root: Path, split: str) -> list[tuple[int, str]]:
    """The image names listed by ``ROOT/splits/<split>.txt`` with their line numbers."""
    path = Path(root) / "splits" / f"{split}.txt"
    if not path.is_file():
        known = ", ".join(kitti_splits(root)) or "none"
        raise GesturekitError(f"{path}: no split {split!r} (splits: {known})")
    return [(i, line.strip()) for i, line in label_lines(path)]


def read_kitti_dataset(root: str | Path, split: str | None = None) -> list[ImageAnnotation]:
    """Read a KITTI dataset directory.

    Args:
        root: the dataset directory (``images/``, ``labels/``, ``splits/``, ``groups.json``).
        split: read only the images listed in ``splits/<split>.txt``; ``None`` reads all images.

    Returns:
        One annotation per image, with the size read from the image header and the group
        from ``groups.json``.
    """
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise GesturekitError(f"{root}: not a KITTI dataset (no images/ folder)")
    if split is None:
        paths = sorted(p for p in images_dir.iterdir() if is_image(p))
    else:
        paths = []
        split_file = root / "splits" / f"{split}.txt"
        for i, name in split_image_names(root, split):
            path = images_dir / name
            if not path.is_file():
                raise GesturekitError(f"{split_file}:{i}: image {name!r} not found in {images_dir}")
            paths.append(path)
    groups = read_groups(root)
    annotations = []
    for path in paths:
        label_path = root / "labels" / f"{path.stem}.txt"
        if not label_path.is_file():
            raise GesturekitError(f"{label_path}: label file missing for image {path.name}")
        width, height = image_size(path)
        annotations.append(
            ImageAnnotation(path, width, height, read_kitti_labels(label_path), groups.get(path.name))
        )
    return annotations


def write_kitti_dataset(
    splits: Mapping[str, Sequence[ImageAnnotation]],
    out_dir: str | Path,
    overwrite: bool = False,
) -> dict[str, list[ImageAnnotation]]:
    """Write a KITTI dataset: images (hard-linked or copied), labels, split files, groups.

    Args:
        splits: split name -> its images. An image may be listed in more than one split.
        out_dir: the dataset directory; it must not already hold a dataset unless ``overwrite``.
        overwrite: replace ``images/``, ``labels/``, ``splits/`` and ``groups.json`` in ``out_dir``.

    Returns:
        The same splits, with every image path pointing into ``out_dir/images``.
    """
    out_dir = Path(out_dir)
    for name in splits:
        check_split_name(name)
    everything = [a for anns in splits.values() for a in anns]
    for ann in everything:
        for box in ann.boxes:
            format_kitti_line(box, f"{ann.image}")
    names = unique_image_names([a.image for a in everything])
    written: dict[Path, ImageAnnotation] = {}
    groups: dict[str, str] = {}
    result: dict[str, list[ImageAnnotation]] = {}
    with staged_output(out_dir, DATASET_ENTRIES, overwrite) as stage:
        for sub in ("images", "labels", "splits"):
            (stage / sub).mkdir()
        for ann in everything:
            if ann.image in written:
                continue
            name = names[ann.image]
            link_or_copy(ann.image, stage / "images" / name)
            lines = "".join(format_kitti_line(b) + "\n" for b in ann.boxes)
            (stage / "labels" / f"{Path(name).stem}.txt").write_text(lines)
            written[ann.image] = ImageAnnotation(
                out_dir / "images" / name, ann.width, ann.height, list(ann.boxes), ann.group
            )
            if ann.group is not None:
                groups[name] = ann.group
        for split, anns in splits.items():
            result[split] = [written[a.image] for a in anns]
            listing = "".join(f"{a.image.name}\n" for a in result[split])
            (stage / "splits" / f"{split}.txt").write_text(listing)
        (stage / "groups.json").write_text(json.dumps(dict(sorted(groups.items())), indent=2) + "\n")
    return result


def read_kitti_splits(root: str | Path) -> dict[str, list[ImageAnnotation]]:
    """Every split of a KITTI dataset, plus ``unlisted`` for images no split lists.

    Returns:
        split name -> annotations, or the single split ``all`` when there are no split files.
    """
    root = Path(root)
    everything = read_kitti_dataset(root)
    names = kitti_splits(root)
    if not names:
        return {NO_SPLIT: everything}
    by_name = {a.image.name: a for a in everything}
    splits: dict[str, list[ImageAnnotation]] = {}
    for split in names:
        splits[split] = []
        split_file = root / "splits" / f"{split}.txt"
        for i, name in split_image_names(root, split):
            if name not in by_name:
                raise GesturekitError(f"{split_file}:{i}: image {name!r} not found in images/")
            splits[split].append(by_name[name])
    listed = {a.image for anns in splits.values() for a in anns}
    rest = [a for a in everything if a.image not in listed]
    if rest:
        splits[UNLISTED] = rest
    return splits
