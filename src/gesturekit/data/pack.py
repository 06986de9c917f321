"""The ``.gkpack`` training pack: one file of resized JPEGs plus a JSON index, opened in milliseconds.

Layout (little endian)::

    header   8s magic "GKPACK\\x00\\x01" | u64 index length | u64 blob length | u32 CRC-32 of the index
    index    zlib-compressed JSON: {"kind", "classes", "meta", "records": [...]}
    blob     the JPEG bytes of every record, concatenated

A record holds its image (long side <= ``max_size``, never upscaled), its boxes in pixels of
the stored image, their labels, split, group, the source path relative to the packed root and
the original image size. A ``detection`` pack keeps every box of a frame with its original
label; a ``classification`` pack keeps one crop per record with one box (the hand inside the
crop) whose label is the class.
"""

from __future__ import annotations

import io
import json
import math
import mmap
import os
import random
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any, Literal

import torch
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gesturekit.data.crops import widen_box
from gesturekit.data.records import ImageAnnotation
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES, read_rgb, to_rgb
from gesturekit.io import atomic_write

MAGIC = b"GKPACK\x00\x01"
_HEADER = struct.Struct("<8sQQI")
PackKind = Literal["detection", "classification"]
BoxTuple = tuple[float, float, float, float]


# ---------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class PackRecord:
    """One image of a pack; ``boxes`` are ``(x1, y1, x2, y2)`` in pixels of the stored image."""

    index: int
    split: str
    group: str | None
    source: str
    orig_size: tuple[int, int]
    size: tuple[int, int]
    boxes: tuple[BoxTuple, ...]
    labels: tuple[str, ...]
    offset: int
    length: int

    @property
    def label(self) -> str:
        """The class of a classification record (its single box's label)."""
        return self.labels[0]


class Pack:
    """A read-only view of a ``.gkpack`` file; picklable, the file is mapped lazily in each process.

    Attributes:
        path: the pack file.
        kind: ``"detection"`` or ``"classification"``.
        classes: the sorted labels present in the pack.
        meta: how it was built (``max_size``, ``quality``, ``context``).
    """

    def __init__(
        self,
        path: Path,
        kind: PackKind,
        classes: list[str],
        meta: dict[str, Any],
        records: list[PackRecord],
        blob_start: int,
    ) -> None:
        self.path = path
        self.kind = kind
        self.classes = classes
        self.meta = meta
        self._records = records
        self._blob_start = blob_start
        self._map: mmap.mmap | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self._records)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_map": None, "_pid": -1}

    def records(self, split: str | None = None) -> list[PackRecord]:
        """All records, or those of one split, in pack order."""
        return [r for r in self._records if split is None or r.split == split]

    def record(self, i: int) -> PackRecord:
        return self._records[i]

    @property
    def splits(self) -> dict[str, int]:
        """Number of records per split."""
        return dict(Counter(r.split for r in self._records))

    def image_bytes(self, i: int) -> bytes:
        """The stored JPEG of record ``i``."""
        if self._map is None or self._pid != os.getpid():
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._pid = os.getpid()
        r = self._records[i]
        start = self._blob_start + r.offset
        return self._map[start : start + r.length]

    def image(self, i: int) -> torch.Tensor:
        """Decode record ``i``: uint8 tensor [3, H, W] (RGB)."""
        name = f"{self.path}: record {i} ({self._records[i].source})"
        return torch.from_numpy(read_rgb(io.BytesIO(self.image_bytes(i)), name)).permute(2, 0, 1)


def open_pack(path: str | Path) -> Pack:
    """Open a ``.gkpack``; a missing, truncated or corrupt file raises GesturekitError naming it."""
    path = Path(path)
    if not path.is_file():
        raise GesturekitError(f"{path}: pack not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size or not head.startswith(MAGIC[:6]):
            raise GesturekitError(f"{path}: not a gesturekit pack (bad header)")
        magic, index_len, blob_len, crc = _HEADER.unpack(head)
        if magic != MAGIC:
            raise GesturekitError(f"{path}: unsupported pack version {magic[6:]!r}")
        if _HEADER.size + index_len + blob_len != size:
            raise GesturekitError(
                f"{path}: truncated or padded pack ({size} bytes, header says "
                f"{_HEADER.size + index_len + blob_len})"
            )
        packed = f.read(index_len)
    if zlib.crc32(packed) != crc:
        raise GesturekitError(f"{path}: corrupt pack index (CRC mismatch)")
    try:
        index = json.loads(zlib.decompress(packed))
        records = [_record_from_json(i, r, blob_len) for i, r in enumerate(index["records"])]
        kind = index["kind"]
        if kind not in ("detection", "classification"):
            raise ValueError(f"unknown kind {kind!r}")
        return Pack(
            path, kind, list(index["classes"]), dict(index["meta"]), records, _HEADER.size + index_len
        )
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        raise GesturekitError(f"{path}: corrupt pack index: {exc}") from None


def _record_from_json(i: int, r: dict[str, Any], blob_len: int) -> PackRecord:
    offset, length = int(r["offset"]), int(r["length"])
    if offset < 0 or length <= 0 or offset + length > blob_len:
        raise ValueError(f"record {i} lies outside the image data")
    flat = r["boxes"]
    boxes = tuple(tuple(map(float, flat[k : k + 4])) for k in range(0, len(flat), 4))
    labels = tuple(map(str, r["labels"]))
    if len(boxes) != len(labels) or len(flat) % 4:
        raise ValueError(f"record {i}: boxes and labels disagree")
    return PackRecord(
        i,
        str(r["split"]),
        r["group"],
        str(r["source"]),
        (int(r["orig_size"][0]), int(r["orig_size"][1])),
        (int(r["size"][0]), int(r["size"][1])),
        boxes,
        labels,
        offset,
        length,
    )


# ---------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class CropSource:
    """One classification sample before packing.

    Attributes:
        image: the image file.
        label: the class (already mapped).
        split: split name.
        box: the hand box in pixels of ``image``; ``None`` means the whole image (a tight crop).
        frame_size: ``(W, H)`` of ``image`` when ``box`` is given.
        group: what must not be split across train/val.
    """

    image: Path
    label: str
    split: str
    box: BoxTuple | None = None
    frame_size: tuple[int, int] | None = None
    group: str | None = None


@dataclass(slots=True)
class PackSummary:
    """What was written: counts per split and class, and the file size in bytes."""

    path: Path
    kind: PackKind
    images: int
    boxes: int
    bytes: int
    splits: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Job:
    path: str
    region: tuple[int, int, int, int] | None  # (x1, y1, x2, y2) cut from the image, exclusive ends
    expected_size: tuple[int, int] | None
    max_size: int
    quality: int


@dataclass(frozen=True, slots=True)
class _Encoded:
    data: bytes
    orig_size: tuple[int, int]
    size: tuple[int, int]


def _encode(job: _Job) -> _Encoded:
    """Read, optionally cut, shrink (never enlarge) and JPEG-encode one image."""
    try:
        with Image.open(job.path) as im:
            orig = im.size
            if job.expected_size is not None and orig != job.expected_size:
                raise GesturekitError(
                    f"{job.path}: image is {orig[0]}x{orig[1]} but its "
                    f"annotation says {job.expected_size[0]}x{job.expected_size[1]}"
                )
            x1, y1, x2, y2 = job.region or (0, 0, *orig)
            w, h = x2 - x1, y2 - y1
            scale = min(1.0, job.max_size / max(w, h))
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if job.region is None and scale <= 0.5 and im.format == "JPEG":
                im.draft("RGB", size)
            src = Image.fromarray(to_rgb(im))
            box = (x1, y1, x2, y2) if job.region is not None else None
            if src.size != orig:  # JPEG draft decoded at a reduced scale
                src = src.resize(size, Image.Resampling.BILINEAR)
            elif size != (w, h) or box is not None:
                src = src.resize(size, Image.Resampling.BILINEAR, box=box)
            buf = io.BytesIO()
            src.save(buf, format="JPEG", quality=job.quality, optimize=True)
    except (OSError, Image.DecompressionBombError) as exc:
        raise GesturekitError(f"{job.path}: cannot read image: {exc}") from None
    return _Encoded(buf.getvalue(), orig, size)


def _encode_all(jobs: list[_Job], workers: int, progress: bool, what: str) -> Iterator[_Encoded]:
    """Encode ``jobs`` in order, on ``workers`` processes, with a progress bar."""
    columns = (TextColumn(f"packing {what}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    with Progress(
        *columns, console=console, transient=True, disable=not (progress and console.is_terminal)
    ) as bar:
        task = bar.add_task(what, total=len(jobs))
        if workers > 1 and len(jobs) >= 64:
            with get_context("fork").Pool(workers) as pool:
                for enc in pool.imap(_encode, jobs, chunksize=32):
                    bar.advance(task)
                    yield enc
        else:
            for job in jobs:
                enc = _encode(job)
                bar.advance(task)
                yield enc


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _common_root(paths: Iterable[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path(".")


def _write(
    out: Path, kind: PackKind, meta: dict[str, Any], records: list[dict[str, Any]], blobs: list[bytes]
) -> PackSummary:
    labels = [lab for r in records for lab in r["labels"]]
    index = {"kind": kind, "classes": sorted(set(labels)), "meta": meta, "records": records}
    packed = zlib.compress(json.dumps(index, separators=(",", ":")).encode(), 6)
    blob_len = sum(map(len, blobs))

    def write(f: IO[bytes]) -> None:
        f.write(_HEADER.pack(MAGIC, len(packed), blob_len, zlib.crc32(packed)))
        f.write(packed)
        for b in blobs:
            f.write(b)

    atomic_write(out, write)
    return PackSummary(
        Path(out),
        kind,
        len(records),
        len(labels),
        Path(out).stat().st_size,
        dict(Counter(r["split"] for r in records)),
        dict(Counter(labels)),
    )


def _scaled(box: BoxTuple, region: tuple[int, int, int, int], size: tuple[int, int]) -> list[float]:
    """``box`` in pixels of ``region`` resized to ``size``, clipped to it, rounded to 1/1000 px."""
    x1, y1, x2, y2 = region
    sx, sy = size[0] / (x2 - x1), size[1] / (y2 - y1)
    bx1, by1, bx2, by2 = box
    return [
        round(min(max((bx1 - x1) * sx, 0.0), size[0]), 3),
        round(min(max((by1 - y1) * sy, 0.0), size[1]), 3),
        round(min(max((bx2 - x1) * sx, 0.0), size[0]), 3),
        round(min(max((by2 - y1) * sy, 0.0), size[1]), 3),
    ]


def build_detection_pack(
    annotations_by_split: Mapping[str, list[ImageAnnotation]],
    out: str | Path,
    max_size: int,
    quality: int = 90,
    root: Path | None = None,
    workers: int = 2,
    progress: bool = True,
) -> PackSummary:
    """Pack annotated frames for detector training, every box kept with its original label.

    Args:
        annotations_by_split: split name -> its images (an image may appear in one split only).
        out: the ``.gkpack`` to write (atomically).
        max_size: longest side of a stored image; smaller images are kept as they are.
        quality: JPEG quality.
        root: sources are stored relative to it (default: the common folder of all images).
        workers: processes that resize and encode.
        progress: show a progress bar.
    """
    _check_settings(max_size, quality)
    items = [(split, ann) for split, anns in annotations_by_split.items() for ann in anns]
    root = root or _common_root(ann.image for _, ann in items)
    jobs = [_Job(str(ann.image), None, (ann.width, ann.height), max_size, quality) for _, ann in items]
    records, blobs, offset = [], [], 0
    for (split, ann), enc in zip(items, _encode_all(jobs, workers, progress, "detection")):
        region = (0, 0, *enc.orig_size)
        records.append(
            {
                "split": split,
                "group": ann.group,
                "source": _relative(ann.image, root),
                "orig_size": list(enc.orig_size),
                "size": list(enc.size),
                "offset": offset,
                "length": len(enc.data),
                "boxes": [v for b in ann.boxes for v in _scaled((b.x1, b.y1, b.x2, b.y2), region, enc.size)],
                "labels": [b.label for b in ann.boxes],
            }
        )
        blobs.append(enc.data)
        offset += len(enc.data)
    return _write(Path(out), "detection", {"max_size": max_size, "quality": quality}, records, blobs)


def build_classification_pack(
    sources: list[CropSource],
    out: str | Path,
    max_size: int,
    quality: int = 90,
    context: float = 2.0,
    root: Path | None = None,
    workers: int = 2,
    progress: bool = True,
) -> PackSummary:
    """Pack hand crops for classifier training, each with its hand box inside the crop.

    A source with a box is cut from its frame around the box enlarged ``context`` times (square,
    clipped to the frame, via ``widen_box``) so that training can apply the crop convention with a
    random enlarge ratio; a source without a box is a tight crop whose box is the whole image.

    Args:
        sources: from ``class_folder_sources`` and/or ``frame_sources``.
        out: the ``.gkpack`` to write (atomically).
        max_size: longest side of a stored crop; smaller crops are kept as they are.
        quality: JPEG quality.
        context: how much larger than the hand box a crop cut from a frame is.
        root: sources are stored relative to it (default: the common folder of all images).
        workers: processes that cut, resize and encode.
        progress: show a progress bar.
    """
    _check_settings(max_size, quality)
    if context < 1:
        raise GesturekitError(f"context: must be >= 1, got {context}")
    root = root or _common_root(s.image for s in sources)
    jobs = []
    for s in sources:
        region = None
        if s.box is not None:
            if s.frame_size is None:
                raise GesturekitError(f"{s.image}: a crop box needs the frame size")
            x1, y1, x2, y2 = widen_box(s.box, s.frame_size, enlarge_ratio=context, square=True)
            region = (x1, y1, x2, y2)
        jobs.append(
            _Job(str(s.image), region, s.frame_size if s.box is not None else None, max_size, quality)
        )
    records, blobs, offset = [], [], 0
    for s, job, enc in zip(sources, jobs, _encode_all(jobs, workers, progress, "crops")):
        region = job.region or (0, 0, *enc.orig_size)
        box = _scaled(s.box or (0, 0, *enc.orig_size), region, enc.size)
        records.append(
            {
                "split": s.split,
                "group": s.group,
                "source": _relative(s.image, root),
                "orig_size": list(enc.orig_size),
                "size": list(enc.size),
                "offset": offset,
                "length": len(enc.data),
                "boxes": box,
                "labels": [s.label],
            }
        )
        blobs.append(enc.data)
        offset += len(enc.data)
    meta = {"max_size": max_size, "quality": quality, "context": context}
    return _write(Path(out), "classification", meta, records, blobs)


def _check_settings(max_size: int, quality: int) -> None:
    if max_size < 8:
        raise GesturekitError(f"max_size: must be >= 8, got {max_size}")
    if not 1 <= quality <= 100:
        raise GesturekitError(f"quality: must be in 1..100, got {quality}")


def class_folder_sources(
    root: str | Path,
    class_map: Callable[[str], str] | None = None,
    holdout: float = 0.0,
    max_per_class: int | None = None,
    seed: int = 0,
    folders: Collection[str] | None = None,
) -> list[CropSource]:
    """The images of ``root/<class>/*`` (of the named ``folders`` only, if given) as tight crops, split
    into ``train`` and ``test``.

    Each folder gives a seeded ``holdout`` fraction of its images to ``test``; the rest are
    ``train``, of which at most ``max_per_class`` (seeded) are kept. The draw depends on the folder's name
    and files alone, so packs of different folder subsets hold out the same images. The class is the
    folder name mapped through ``class_map`` (e.g. a ``data.classmap.ClassMap``).
    """
    root = Path(root)
    if not 0 <= holdout < 1:
        raise GesturekitError(f"holdout: must be in [0, 1), got {holdout}")
    if max_per_class is not None and max_per_class < 1:
        raise GesturekitError(f"max_per_class: must be >= 1, got {max_per_class}")
    present = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if folders is not None:
        wanted = set(folders)
        missing = sorted(wanted - {p.name for p in present})
        if missing:
            raise GesturekitError(f"{root}: no class folder {missing[0]!r} "
                                  f"(folders: {', '.join(p.name for p in present) or 'none'})")
        present = [p for p in present if p.name in wanted]
    out: list[CropSource] = []
    for folder in present:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        random.Random(f"{seed}:{folder.name}").shuffle(files)
        n_test = math.floor(len(files) * holdout + 0.5)
        test, train = files[:n_test], files[n_test:]
        if max_per_class is not None:
            train = train[:max_per_class]
        label = class_map(folder.name) if class_map else folder.name
        out += [CropSource(p, label, "test") for p in sorted(test)]
        out += [CropSource(p, label, "train") for p in sorted(train)]
    if not out:
        raise GesturekitError(f"{root}: no class folders with images (expected ROOT/<class>/*.jpg)")
    return out


def frame_sources(
    annotations_by_split: Mapping[str, list[ImageAnnotation]],
    class_map: Callable[[str], str] | None = None,
) -> list[CropSource]:
    """One classification sample per box of each frame; the class is the box label mapped through
    ``class_map`` (e.g. a ``data.classmap.ClassMap``)."""
    return [
        CropSource(
            ann.image,
            class_map(b.label) if class_map else b.label,
            split,
            (b.x1, b.y1, b.x2, b.y2),
            (ann.width, ann.height),
            ann.group,
        )
        for split, anns in annotations_by_split.items()
        for ann in anns
        for b in ann.boxes
    ]
