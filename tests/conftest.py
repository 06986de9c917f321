"""Shared fixtures: the real data folder, and builders of tiny datasets in each source format."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium, which the browser tests drive through Playwright (.ci/run installs it)."""
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HAND_FIELDS = ("myleft", "myright", "yourleft", "yourright")



@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """Commands run in-process (``cli.main.main``, ``infer``) leave the exit-at-once handlers a real
    process wants for its exit; the next test gets the handlers it started with."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)

@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder: $GESTUREKIT_DATA, else ../shared/data beside the repository."""
    root = Path(os.environ.get("GESTUREKIT_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()
    if not root.is_dir():
        pytest.skip("real data absent: set GESTUREKIT_DATA")
    return root


def make_image(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (90, 120, 150)) -> Path:
    """Write a small solid-colour image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_kitti(
    root: Path,
    labels: dict[str, Sequence[str]],
    splits: dict[str, Sequence[str]] | None = None,
    size: tuple[int, int] = (64, 48),
) -> Path:
    """A KITTI dataset: image file name -> its label lines, and split name -> image names."""
    for name, lines in labels.items():
        make_image(root / "images" / name, size)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{Path(name).stem}.txt").write_text("".join(f"{x}\n" for x in lines))
    for split, names in (splits or {}).items():
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def kitti_line(label: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f"{label} 0 0 0 {x1} {y1} {x2} {y2} 0 0 0 0 0 0 0"


def _struct_array(rows: Sequence[dict], fields: Sequence[str]) -> np.ndarray:
    """A 1xN MATLAB struct array (what scipy.io.savemat writes as ``struct``)."""
    array = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for j, row in enumerate(rows):
        for f in fields:
            array[0, j][f] = row[f]
    return array


def write_egohands_release(
    root: Path,
    videos: dict[str, list[tuple[int, dict[str, list[tuple[float, float]]]]]],
    size: tuple[int, int] = (128, 72),
    metadata: bool = True,
    extra_frames: Sequence[tuple[str, int]] = (),
) -> Path:
    """An EgoHands release in the original format.

    Args:
        videos: video name -> labelled frames, each ``(frame_num, {hand field: polygon points})``
            (absent hand fields are empty).
        metadata: write ``metadata.mat`` (else the frames' sorted order is the only link).
        extra_frames: ``(video, frame_num)`` of unlabelled frame images to add.
    """
    samples = root / "_LABELLED_SAMPLES"
    meta_rows = []
    for video, frames in videos.items():
        poly_rows = []
        for frame_num, hands in frames:
            make_image(samples / video / f"frame_{frame_num:04d}.jpg", size)
            row = {f: np.array(hands[f], dtype=float) if hands.get(f) else np.zeros((0, 0)) for f in HAND_FIELDS}
            poly_rows.append(row)
        scipy.io.savemat(samples / video / "polygons.mat", {"polygons": _struct_array(poly_rows, HAND_FIELDS)})
        labelled = _struct_array(
            [{"frame_num": np.array([[n]]), **r} for (n, _), r in zip(frames, poly_rows)],
            ("frame_num", *HAND_FIELDS),
        )
        meta_rows.append({
            "video_id": video, "partner_video_id": "", "ego_viewer_id": "B", "partner_id": "T",
            "location_id": "OFFICE", "activity_id": "CARDS", "labelled_frames": labelled,
        })
    for video, frame_num in extra_frames:
        make_image(samples / video / f"frame_{frame_num:04d}.jpg", size)
    if metadata:
        fields = ("video_id", "partner_video_id", "ego_viewer_id", "partner_id", "location_id",
                  "activity_id", "labelled_frames")
        scipy.io.savemat(root / "metadata.mat", {"video": _struct_array(meta_rows, fields)})
    return root


def random_detector(input_size: int = 64):
    """A seeded, randomly initialised one-class detector with metadata (train mode)."""
    import torch

    from gesturekit.models import create_model
    from gesturekit.models.metadata import detector_metadata

    torch.manual_seed(0)
    model = create_model("detectnet_v2", num_classes=1, pretrained=False)
    model.metadata = detector_metadata("detectnet_v2", {"num_classes": 1}, ["hand"], input_size, {})
    return model


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for servers a test starts)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
