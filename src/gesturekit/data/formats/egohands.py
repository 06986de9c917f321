"""EgoHands readers: the original release (MATLAB polygons) and the common CSV box form.

Original release (egohands_data.zip, Indiana University)::

    ROOT/metadata.mat                            struct array `video`: video_id, ...,
                                                 labelled_frames (frame_num, ...)
    ROOT/_LABELLED_SAMPLES/<video>/polygons.mat  struct array `polygons`, one entry per labelled frame,
                                                 fields myleft, myright, yourleft, yourright (Nx2 x,y points)
    ROOT/_LABELLED_SAMPLES/<video>/frame_XXXX.jpg

The polygons entries of a video belong to the frames ``metadata.mat`` lists for it
(``frame_XXXX.jpg`` with ``XXXX = frame_num``); without ``metadata.mat`` they belong to the
video folder's frames sorted by name. Each polygon becomes the box of its points, clipped to
the image; polygons with an empty box are dropped and counted.

CSV form: ``ROOT/images/<file>`` and ``ROOT/<split>_labels.csv`` with the header
``filename,width,height,class,xmin,ymin,xmax,ymax`` (one row per box, pixels).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from gesturekit.data.formats.kitti import check_box, image_size, is_image, parse_number, read_text
from gesturekit.data.records import Box, ImageAnnotation
from gesturekit.errors import GesturekitError

HAND_FIELDS = ("myleft", "myright", "yourleft", "yourright")
CSV_HEADER = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
SAMPLES_DIR = "_LABELLED_SAMPLES"


def _load_mat(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise GesturekitError(f"{path}: file not found")
    try:
        import scipy.io  # a training extra, imported here so that the CLI starts without it
    except ModuleNotFoundError:
        raise GesturekitError(f"{path}: reading MATLAB files needs scipy: pip install 'gesturekit[train]'") from None
    try:
        return scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for a corrupt file
        raise GesturekitError(f"{path}: unreadable MATLAB file ({type(exc).__name__}: {exc})") from None


def _struct_entries(mat: dict[str, Any], name: str, fields: tuple[str, ...], path: Path) -> np.ndarray:
    """The entries of MATLAB struct array ``name``, checked to carry ``fields``, as a flat array."""
    value = mat.get(name)
    if not isinstance(value, np.ndarray) or value.dtype.names is None:
        raise GesturekitError(f"{path}: no struct array {name!r}")
    missing = [f for f in fields if f not in value.dtype.names]
    if missing:
        raise GesturekitError(f"{path}: {name} lacks field {missing[0]!r}")
    return value.ravel(order="F")


def polygon_box(points: Any, width: int, height: int, where: str) -> tuple[float, float, float, float] | None:
    """The box of a polygon's points clipped to the image, or ``None`` when it is empty.

    Args:
        points: [N, 2] array of ``x, y`` points (N may be 0).
        where: names the polygon in an error.

    Raises:
        GesturekitError: ``points`` is not a numeric [N, 2] array.
    """
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise GesturekitError(f"{where}: polygon is not a numeric array") from None
    if pts.size == 0:
        return None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise GesturekitError(f"{where}: polygon has shape {pts.shape}, expected Nx2 x,y points")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return None
    x1, y1 = np.clip(pts.min(axis=0), 0, (width, height))
    x2, y2 = np.clip(pts.max(axis=0), 0, (width, height))
    if x2 <= x1 or y2 <= y1:
        return None
    return float(x1), float(y1), float(x2), float(y2)


def _has_polygon(points: Any) -> bool:
    return np.asarray(points).size > 0


def _metadata_frames(path: Path) -> dict[str, list[int]]:
    """``metadata.mat``: video_id -> frame_num of each labelled frame, in polygons order."""
    videos = _struct_entries(_load_mat(path), "video", ("video_id", "labelled_frames"), path)
    frames: dict[str, list[int]] = {}
    for i, video in enumerate(videos):
        try:
            video_id = str(np.asarray(video["video_id"]).ravel()[0])
            labelled = np.asarray(video["labelled_frames"]).ravel(order="F")
            frames[video_id] = [int(np.asarray(f["frame_num"]).ravel()[0]) for f in labelled]
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise GesturekitError(f"{path}: video[{i}]: bad video_id/labelled_frames ({exc})") from None
    return frames


def _video_frames(video_dir: Path, count: int, frame_nums: list[int] | None, polygons: Path) -> list[Path]:
    if frame_nums is not None:
        if len(frame_nums) != count:
            raise GesturekitError(
                f"{polygons}: {count} polygons entries but metadata.mat lists {len(frame_nums)} frames"
            )
        frames = [video_dir / f"frame_{n:04d}.jpg" for n in frame_nums]
        for frame in frames:
            if not frame.is_file():
                raise GesturekitError(f"{frame}: frame listed in metadata.mat not found")
        return frames
    frames = sorted(p for p in video_dir.glob("frame_*") if is_image(p))
    if len(frames) != count:
        raise GesturekitError(f"{polygons}: {count} polygons entries but {len(frames)} frame images")
    return frames


def read_egohands(root: str | Path) -> tuple[list[ImageAnnotation], int]:
    """Read the original EgoHands release.

    Args:
        root: the release folder (holding ``_LABELLED_SAMPLES/`` and ``metadata.mat``), or
            the ``_LABELLED_SAMPLES`` folder itself.

    Returns:
        One annotation per labelled frame (class ``hand``, group = video name), and the number
        of polygons dropped because their box is empty once clipped to the image.
    """
    root = Path(root)
    samples = root / SAMPLES_DIR if (root / SAMPLES_DIR).is_dir() else root
    video_dirs = sorted(p.parent for p in samples.glob("*/polygons.mat"))
    if not video_dirs:
        raise GesturekitError(f"{root}: no {SAMPLES_DIR}/<video>/polygons.mat (not an EgoHands release)")
    candidates = (root / "metadata.mat", samples.parent / "metadata.mat")
    metadata = next((p for p in candidates if p.is_file()), None)
    frame_nums = _metadata_frames(metadata) if metadata else {}
    annotations: list[ImageAnnotation] = []
    dropped = 0
    for video_dir in video_dirs:
        polygons_path = video_dir / "polygons.mat"
        entries = _struct_entries(_load_mat(polygons_path), "polygons", HAND_FIELDS, polygons_path)
        frames = _video_frames(video_dir, len(entries), frame_nums.get(video_dir.name), polygons_path)
        for j, (entry, frame) in enumerate(zip(entries, frames)):
            width, height = image_size(frame)
            boxes = []
            for field in HAND_FIELDS:
                where = f"{polygons_path}: polygons({j + 1}).{field}"
                box = polygon_box(entry[field], width, height, where)
                if box is not None:
                    boxes.append(Box("hand", *box))
                elif _has_polygon(entry[field]):
                    dropped += 1
            annotations.append(ImageAnnotation(frame, width, height, boxes, video_dir.name))
    return annotations, dropped


# ---------------------------------------------------------------- CSV form


def egohands_group(filename: str) -> str | None:
    """The video of a CSV image name (``CARDS_OFFICE_S_B_frame_0011.jpg`` -> ``CARDS_OFFICE_S_B``)."""
    stem = Path(filename).stem
    return stem.split("_frame_")[0] if "_frame_" in stem else None


def _read_csv(path: Path, images_dir: Path, owner: dict[str, Path]) -> list[ImageAnnotation]:
    rows = csv.reader(io.StringIO(read_text(path), newline=""))
    by_image: dict[str, ImageAnnotation] = {}
    try:
        header = next(rows, None)
        if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
            raise GesturekitError(f"{path}:1: expected the header {','.join(CSV_HEADER)}")
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}:{rows.line_num}"
            if len(row) != len(CSV_HEADER):
                raise GesturekitError(f"{where}: expected {len(CSV_HEADER)} columns, got {len(row)}")
            name, label = row[0].strip(), row[3].strip()
            width, height, x1, y1, x2, y2 = (
                parse_number(row[k], where, CSV_HEADER[k]) for k in (1, 2, 4, 5, 6, 7)
            )
            box = check_box(label, x1, y1, x2, y2, where)
            ann = by_image.get(name)
            if ann is None:
                if owner.setdefault(name, path) != path:
                    raise GesturekitError(f"{where}: image {name!r} is also listed in {owner[name]}")
                image = images_dir / name
                if not name or not image.is_file():
                    raise GesturekitError(f"{where}: image {name!r} not found in {images_dir}")
                size = image_size(image)
                if size != (width, height):
                    raise GesturekitError(
                        f"{where}: width,height {width:g},{height:g} but {name} is {size[0]}x{size[1]}"
                    )
                ann = by_image[name] = ImageAnnotation(image, size[0], size[1], [], egohands_group(name))
            elif (width, height) != (ann.width, ann.height):
                raise GesturekitError(f"{where}: width,height {width:g},{height:g} differ from earlier rows")
            ann.boxes.append(box)
    except csv.Error as exc:
        raise GesturekitError(f"{path}:{rows.line_num}: invalid CSV: {exc}") from None
    return [by_image[k] for k in sorted(by_image)]


def read_egohands_csv(root: str | Path) -> dict[str, list[ImageAnnotation]]:
    """Read the EgoHands CSV form: ``ROOT/<split>_labels.csv`` and ``ROOT/images/``.

    Returns:
        split name (``train``, ``test``: the CSV name without ``_labels``) -> annotations,
        group = the video name (the image name before ``_frame_``).
    """
    root = Path(root)
    csv_files = sorted(root.glob("*_labels.csv"))
    if not csv_files:
        raise GesturekitError(f"{root}: no <split>_labels.csv found (not the EgoHands CSV form)")
    images_dir = root / "images" if (root / "images").is_dir() else root
    owner: dict[str, Path] = {}
    return {p.name[: -len("_labels.csv")]: _read_csv(p, images_dir, owner) for p in csv_files}
