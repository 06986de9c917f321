"""Sources: what opens as what, missing and unreadable inputs, corrupt frames, reconnects."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from gesturekit.errors import GesturekitError
from gesturekit.pipeline.sources import ImageSource, Reconnect, VideoSource, open_source
from test_pipeline_fakes import write_video


def corrupt_middle(path: Path, out: Path) -> Path:
    """Invert a quarter of the mp4 media data (``mdat`` payload) from its middle; the index
    (``moov``) stays intact, so the container opens and some packets fail to decode."""
    data = bytearray(path.read_bytes())
    tag = data.index(b"mdat")
    start, end = tag + 4, tag - 4 + int.from_bytes(data[tag - 4:tag], "big")
    middle = (start + end) // 2
    for k in range(middle, middle + (end - start) // 4):
        data[k] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def test_video_frames_are_decoded_in_order_with_pts(tmp_path: Path) -> None:
    source = open_source(str(write_video(tmp_path / "a.mp4", 12, fps=10)), 3)
    assert isinstance(source, VideoSource) and not source.live and source.fps == pytest.approx(10)
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(12))
    assert all(f.source_id == 3 and f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.pts for f in frames] == pytest.approx([i / 10 for i in range(12)])
    assert source.stats.frames == 12 and source.stats.corrupt == 0


def test_max_frames_stops_early(tmp_path: Path) -> None:
    source = open_source(str(write_video(tmp_path / "a.mp4", 12)))
    assert [f.index for f in source.frames(max_frames=5)] == [0, 1, 2, 3, 4]


def test_image_folder_is_recursive_sorted_and_relative(tmp_path: Path) -> None:
    for name in ["b.png", "a.jpg", "sub/c.jpg"]:
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "imgs" / name)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    source = open_source(str(tmp_path / "imgs"))
    assert isinstance(source, ImageSource) and source.still
    frames = list(source.frames())
    assert [f.name for f in frames] == ["a.jpg", "b.png", "sub/c.jpg"]
    assert frames[1].image.shape == (10, 20, 3) and tuple(frames[1].image[0, 0]) == (1, 2, 3)
    assert source.stats.corrupt == 1  # broken.jpg skipped and counted
    single = open_source(str(tmp_path / "imgs" / "sub" / "c.jpg"))
    assert [f.name for f in single.frames()] == ["c.jpg"]


@pytest.mark.parametrize("name", ["missing.mp4", "missing_folder", "gone.jpg"])
def test_missing_input_is_one_line_error_naming_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(GesturekitError) as err:
        open_source(str(tmp_path / name))
    assert name in str(err.value) and "\n" not in str(err.value)


def test_empty_folder_and_unreadable_container_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(GesturekitError, match="no images"):
        open_source(str(tmp_path / "empty"))
    good = write_video(tmp_path / "a.mp4", 10)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # the index (moov) is lost
    (tmp_path / "text.avi").write_text("hello")
    for bad in (truncated, tmp_path / "text.avi"):
        with pytest.raises(GesturekitError) as err:
            open_source(str(bad))
        assert str(err.value).startswith(f"{bad}: ") and "\n" not in str(err.value)


def test_corrupt_packets_are_skipped_and_counted(tmp_path: Path) -> None:
    bad = corrupt_middle(write_video(tmp_path / "a.mp4", 20), tmp_path / "bad.mp4")
    source = open_source(str(bad))
    frames = list(source.frames())
    assert source.stats.corrupt >= 1
    assert 0 < len(frames) < 20
    assert [f.index for f in frames] == list(range(len(frames)))  # renumbered, in order


def test_camera_and_url_specs_are_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []

    class FakeContainer:
        class streams:  # noqa: N801
            video = [type("S", (), {"average_rate": 30})()]

        def close(self) -> None:
            pass

    def fake_open(uri: str, format: str | None = None, **kwargs: object) -> FakeContainer:  # noqa: A002
        opened.append((uri, format, kwargs.get("options")))
        return FakeContainer()

    monkeypatch.setattr(av, "open", fake_open)
    assert open_source("2").live
    assert open_source("/dev/video1").live
    assert open_source("rtsp://cam.local/stream").live
    assert open_source("http://cam.local/mjpeg").live
    assert not open_source("https://example.org/clip.mp4").live
    assert opened[0] == ("/dev/video2", "v4l2", {})
    assert opened[1][:2] == ("/dev/video1", "v4l2")
    assert opened[2][2] == {"rtsp_transport": "tcp"}


def test_live_source_retries_with_backoff_then_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(write_video(tmp_path / "a.mp4", 4))
    real_open = av.open
    calls = {"n": 0, "fail_after": 2}

    def flaky_open(uri: str, **kwargs: object) -> object:
        calls["n"] += 1
        # First open fails once, then the stream "drops" at every end and later stays down.
        if calls["n"] == 1 or calls["n"] > calls["fail_after"] + 1:
            raise av.error.ConnectionRefusedError(111, "Connection refused")
        return real_open(uri, **{k: v for k, v in kwargs.items() if k != "timeout"})

    monkeypatch.setattr(av, "open", flaky_open)
    source = VideoSource(path, 0, live=True, reconnect=Reconnect(attempts=3, backoff_s=0.001))
    frames = list(source.frames())
    # Opened on the 2nd try, played 4 frames, reopened at once after the end (4 more frames),
    # then down: one immediate try and 3 retries with back-off.
    assert [f.index for f in frames] == list(range(8))
    assert source.stats.reconnects == 1 + 1 + (1 + 3)
    assert "gave up reconnecting after 3 retries" in (source.stats.error or "")

    calls["n"], calls["fail_after"] = 0, -10
    with pytest.raises(GesturekitError, match="cannot open stream after 3 retries"):
        VideoSource("rtsp://nowhere/stream", 0, live=True, reconnect=Reconnect(attempts=3, backoff_s=0.001))


def test_reconnect_backoff_doubles_and_is_capped() -> None:
    policy = Reconnect(attempts=6, backoff_s=0.5, max_backoff_s=4.0)
    assert [policy.delay(k) for k in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_real_avi_clip_decodes(data_root: Path) -> None:
    path = data_root / "video" / "nvgesture_sk_color.avi"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    source = open_source(str(path))
    frames = list(source.frames())
    assert len(frames) == 20 and frames[0].image.shape == (240, 320, 3)
    assert source.stats.corrupt == 0
