"""Smaller bad inputs, each one line: binary and half-set specs, huge tokens, leftovers of killed
runs, truncated videos, idle preview clients."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from gesturekit.config.app import load_app_config
from gesturekit.data.formats.kitti import parse_kitti_line
from gesturekit.engine.checkpoint import remove_stale_writes
from gesturekit.errors import MAX_LINE, GesturekitError
from gesturekit.pipeline.sinks import PreviewServer
from gesturekit.pipeline.sources import open_source


def test_a_binary_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_bytes(b"sources: [a]\n\xff\xfe\x00binary")
    with pytest.raises(GesturekitError, match=rf"^{path}: not a UTF-8 text file \(byte 13\)$"):
        load_app_config(path)


def test_an_unset_variable_names_its_line_and_comments_are_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GK_UNSET", raising=False)
    monkeypatch.setenv("GK_DIR", "/videos")
    path = tmp_path / "app.yaml"
    path.write_text("# ${GK_UNSET} in a comment is fine\nsources: [${GK_DIR}/a.mp4, $GK_DIR/b.mp4]  # ${GK_UNSET}\n")
    assert load_app_config(path).sources == ["/videos/a.mp4", "/videos/b.mp4"]
    path.write_text("sources:\n  - ${GK_UNSET}/a.mp4\n")
    with pytest.raises(GesturekitError, match=rf"^{path}:2: environment variable \$\{{GK_UNSET\}} is not set$"):
        load_app_config(path)


def test_a_huge_token_is_cut_out_of_the_error() -> None:
    token = "9" * 5 + "x" * 10_000_000
    with pytest.raises(GesturekitError) as err:
        parse_kitti_line(f"hand 0 0 0 {token} 1 2 3 0 0 0 0 0 0 0", "labels/a.txt:7")
    message = str(err.value)
    assert message.startswith("labels/a.txt:7: x1 is not a number: '99999xxx") and len(message) <= MAX_LINE
    assert "characters cut" in message and "\n" not in message


def test_a_killed_checkpoint_write_is_cleaned_up_by_the_next_run(tmp_path: Path) -> None:
    kill = ("import os, signal, sys; from gesturekit.io import atomic_write; "
            "atomic_write(sys.argv[1], lambda f: (f.write(b'x' * 4096), f.flush(), os.kill(os.getpid(), signal.SIGKILL)))")
    result = subprocess.run([sys.executable, "-c", kill, str(tmp_path / "last.pt")], timeout=60)
    assert result.returncode == -9
    (orphan,) = tmp_path.glob(".last.pt.*.tmp")  # what the killed write left
    (tmp_path / "best.pt").write_bytes(b"kept")
    (tmp_path / ".notes.tmp").write_text("not a checkpoint write")
    assert remove_stale_writes(tmp_path) == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "best.pt"]


def test_a_truncated_video_with_its_index_in_front_says_frames_are_missing(tmp_path: Path, data_root: Path) -> None:
    with av.open(str(data_root / "video" / "asl_hand.25fps.mp4")) as src, \
            av.open(str(tmp_path / "front.mp4"), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in list(src.demux(src.streams.video[0]))[:60]:  # the first 60 frames
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = (tmp_path / "front.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    source = open_source(str(tmp_path / "cut.mp4"))
    frames = sum(1 for _ in source.frames())
    assert 0 < frames < 60
    assert source.stats.error == f"ended after {frames} of the 60 frames its index lists (truncated file?)"
    whole = open_source(str(tmp_path / "front.mp4"))
    assert sum(1 for _ in whole.frames()) == 60 and whole.stats.error is None


def test_the_preview_drops_idle_clients() -> None:
    server = PreviewServer(0, num_sources=1, idle_timeout_s=0.5)
    try:
        clients = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)]
        time.sleep(1.5)
        for client in clients:
            assert client.recv(1) == b""  # the server closed it
            client.close()
    finally:
        server.close()
