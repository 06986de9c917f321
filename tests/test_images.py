"""The one image reader: every Pillow mode of a real frame, unreadable files and decompression bombs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gesturekit.errors import GesturekitError
from gesturekit.images import MAX_IMAGE_PIXELS, read_rgb
from gesturekit.pipeline.sources import open_source


@pytest.fixture(scope="module")
def real_frame(data_root: Path) -> np.ndarray:
    """A real EgoHands frame, uint8 RGB, shrunk to keep the test fast."""
    path = sorted((data_root / "egohands" / "images").rglob("*.jpg"))[0]
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((160, 90)))


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path, real_frame: np.ndarray) -> None:
    grey8 = np.asarray(Image.fromarray(real_frame).convert("L"))
    grey16 = grey8.astype(np.uint16) * 257  # the same picture on the 16-bit scale
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")  # Pillow reads it as a wide integer image
    rgb = read_rgb(tmp_path / "g16.png")
    assert rgb.shape == (*grey8.shape, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[:, :, 0], grey8) and np.array_equal(rgb[:, :, 2], grey8)
    assert rgb.mean() < 250  # Pillow's own convert("RGB") turns this white


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "YCbCr", "I", "F", "1"])
def test_every_mode_of_a_real_frame_reads_close_to_its_rgb(tmp_path: Path, real_frame: np.ndarray, mode: str) -> None:
    image = Image.fromarray(real_frame)
    if mode == "I":  # 32-bit integers on the 16-bit scale (what 16-bit TIFFs and PNGs become)
        image = Image.fromarray((np.asarray(image.convert("L")).astype(np.int32) * 257))
    elif mode == "F":  # floats on 0..1
        image = Image.fromarray(np.asarray(image.convert("L")).astype(np.float32) / 255)
    else:
        image = image.convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("I", "F", "CMYK", "YCbCr") else "x.png")
    if mode == "YCbCr":
        path = tmp_path / "x.jpg"
    image.save(path)
    rgb = read_rgb(path)
    assert rgb.shape == real_frame.shape and rgb.dtype == np.uint8
    expected = real_frame.astype(float)
    if mode in ("L", "LA", "I", "F", "1"):
        expected = np.repeat(np.asarray(Image.fromarray(real_frame).convert("L"), float)[:, :, None], 3, axis=2)
    tolerance = {"1": 128, "P": 20, "YCbCr": 12}.get(mode, 2)
    assert np.abs(rgb.astype(float) - expected).mean() < tolerance


def test_unreadable_and_missing_images_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(GesturekitError, match=r"bad.jpg: unreadable image") as err:
        read_rgb(tmp_path / "bad.jpg")
    assert "\n" not in str(err.value)
    with pytest.raises(GesturekitError, match="missing.png: image not found"):
        read_rgb(tmp_path / "missing.png")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets the package's filter
def test_decompression_bombs_are_refused_from_the_header(tmp_path: Path) -> None:
    limit = f"over the {MAX_IMAGE_PIXELS:,}-pixel limit"
    with pytest.raises(GesturekitError, match=f"bomb.png: image is {limit}"):
        read_rgb(bomb_png(tmp_path / "bomb.png", 60000, 60000))
    with pytest.raises(GesturekitError, match=f"big.png: image of 10000x10000 is {limit}"):  # below Pillow's error
        read_rgb(bomb_png(tmp_path / "big.png", 10000, 10000))


def test_a_folder_with_a_bomb_and_a_corrupt_file_skips_and_counts_them(tmp_path: Path, real_frame: np.ndarray) -> None:
    Image.fromarray(real_frame).save(tmp_path / "a.png")
    bomb_png(tmp_path / "b.png", 60000, 60000)
    (tmp_path / "c.jpg").write_bytes(b"garbage")
    Image.fromarray(real_frame).save(tmp_path / "d.jpg")
    source = open_source(str(tmp_path))
    frames = list(source.frames())
    assert [f.name for f in frames] == ["a.png", "d.jpg"]
    assert source.stats.corrupt == 2 and np.array_equal(frames[0].image, real_frame)
