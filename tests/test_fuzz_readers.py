"""Fuzzing every reader: random bytes and random mutations of real files give a result or a
:class:`GesturekitError` of one line per problem naming the file, never another exception.

Mutations overwrite a few bytes at random places and may cut the file short. Each reader gets a
few dozen examples, so that CI stays fast; ``HYPOTHESIS_PROFILE=soak`` runs many more.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gesturekit.config.app import load_app_config
from gesturekit.config.base import load_spec
from gesturekit.config.specs import DetectorSpec
from gesturekit.data.formats.hagrid import read_hagrid
from gesturekit.data.formats.kitti import read_kitti_labels
from gesturekit.data.formats.voc import read_voc_xml
from gesturekit.data.formats.yolo import read_yolo_labels
from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.images import read_rgb
from gesturekit.models.metadata import read_onnx_metadata
from gesturekit.pipeline.sources import open_source

SPECS = Path(__file__).resolve().parents[1] / "src" / "gesturekit" / "specs"
ZOO = Path(__file__).resolve().parents[1] / "src" / "gesturekit" / "models" / "zoo"

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("soak", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

flips = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)
keep = st.one_of(st.just(1.0), st.floats(0, 1))


def mutate(data: bytes, changes: list[tuple[float, int]], kept: float) -> bytes:
    """``data`` with a byte overwritten at each ``(position fraction, value)``, cut to ``kept`` of its length."""
    out = bytearray(data)
    for where, value in changes:
        out[int(where * len(out))] = value
    return bytes(out[: int(len(out) * kept)])


class RealFiles(dict):
    """The real files by kind (a short repr: hypothesis prints the arguments of a failing example)."""

    def __repr__(self) -> str:
        return f"RealFiles({', '.join(self)})"


def result_or_one_line(read: Callable[[Path], Any], path: Path) -> None:
    """``read(path)`` returns, or raises GesturekitError: one line naming the file per problem
    (a spec with two bad keys is two lines)."""
    try:
        read(path)
    except GesturekitError as exc:
        lines = str(exc).split("\n")
        assert all(path.name in line for line in lines), repr(exc)


@pytest.fixture(scope="module")
def real(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real files of every kind, small enough to read many times."""
    tmp = tmp_path_factory.mktemp("real")
    frame = next(iter(sorted((data_root / "hagrid" / "frames").glob("*.jpg"))))
    with Image.open(frame) as image:
        small = image.convert("RGB").resize((96, 128))
    files = RealFiles()
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        small.save(buffer, format=fmt)
        files[fmt] = buffer.getvalue()
    clip = tmp / "clip.mp4"  # the first 20 frames of the real clip, remuxed
    with av.open(str(data_root / "video" / "asl_hand.25fps.mp4")) as src, av.open(str(clip), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in list(src.demux(src.streams.video[0]))[:20]:
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    files["video"] = clip.read_bytes()
    yolo_dir = data_root / "hands_yolo" / "train" / "labels"
    files["yolo"] = next(iter(sorted(yolo_dir.glob("*.txt")))).read_bytes()
    files["kitti"] = b"hand 0 0 0 12.5 30 80.25 96 0 0 0 0 0 0 0\nhand 0 0 0 1 2 3 4 0 0 0 0 0 0 0\n"
    files["voc"] = (b"<annotation><filename>a.jpg</filename><size><width>96</width><height>128</height>"
                    b"<depth>3</depth></size><object><name>hand</name><bndbox><xmin>10</xmin><ymin>20</ymin>"
                    b"<xmax>50</xmax><ymax>90</ymax></bndbox></object></annotation>")
    (tmp / "images").mkdir()
    small.save(tmp / "images" / "a.jpg")
    files["voc_images"] = tmp / "images"
    hagrid = json.loads((data_root / "hagrid" / "annotations" / "test" / "call.json").read_text())
    files["hagrid"] = json.dumps(dict(list(hagrid.items())[:3])).encode()
    files["hagrid_frames"] = data_root / "hagrid" / "frames"
    files["detector_spec"] = (SPECS / "detector.yaml").read_bytes()
    files["app_config"] = (SPECS / "app.yaml").read_bytes()
    files["onnx"] = (ZOO / "hand-detector-pruned-int8" / "model.onnx").read_bytes()
    files["checkpoint"] = (ZOO / "hand-detector-pruned" / "model.pt").read_bytes()
    return files


def readers(tmp: Path, real: dict[str, Any]) -> dict[str, tuple[str, Callable[[Path], Any]]]:
    """Reader name -> (the real file it mutates, how to read a file of that kind)."""
    def hagrid(path: Path) -> Any:
        root = tmp / "hagrid"
        (root / "annotations" / "test").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "test" / path.name).write_bytes(path.read_bytes())
        if not (root / "frames").exists():
            (root / "frames").symlink_to(real["hagrid_frames"])
        return read_hagrid(root)

    def video(path: Path) -> Any:
        return sum(1 for _ in open_source(str(path)).frames(max_frames=10))

    return {
        "jpeg": ("JPEG", lambda p: read_rgb(p)),
        "png": ("PNG", lambda p: read_rgb(p)),
        "video": ("video", video),
        "kitti": ("kitti", read_kitti_labels),
        "yolo": ("yolo", lambda p: read_yolo_labels(p, ["hand"], 640, 480)),
        "voc": ("voc", lambda p: read_voc_xml(p, real["voc_images"])),
        "hagrid": ("hagrid", hagrid),
        "detector spec": ("detector_spec", lambda p: load_spec(p, DetectorSpec)),
        "app config": ("app_config", load_app_config),
        "onnx model": ("onnx", read_onnx_metadata),
        "checkpoint": ("checkpoint", load_checkpoint),
    }


SUFFIX = {"jpeg": ".jpg", "png": ".png", "video": ".mp4", "kitti": ".txt", "yolo": ".txt", "voc": ".xml",
          "hagrid": ".json", "detector spec": ".yaml", "app config": ".yaml", "onnx model": ".onnx",
          "checkpoint": ".pt"}


@pytest.mark.parametrize("reader", list(SUFFIX))
@given(changes=flips, kept=keep)
def test_mutated_real_files(tmp_path: Path, real: dict[str, Any], reader: str, changes: list, kept: float) -> None:
    key, read = readers(tmp_path, real)[reader]
    path = tmp_path / f"input{SUFFIX[reader]}"
    path.write_bytes(mutate(real[key], changes, kept))
    result_or_one_line(read, path)


@pytest.mark.parametrize("reader", list(SUFFIX))
@given(data=st.binary(max_size=512))
def test_random_bytes(tmp_path: Path, real: dict[str, Any], reader: str, data: bytes) -> None:
    _, read = readers(tmp_path, real)[reader]
    path = tmp_path / f"input{SUFFIX[reader]}"
    path.write_bytes(data)
    result_or_one_line(read, path)
