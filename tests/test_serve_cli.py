"""``gesturekit serve --ui-port``: one server started as a user starts it, its page driven in a real headless
Chromium (Debian's chromium through Playwright) with a real HaGRID frame and a real clip as a fake webcam,
then SIGTERM: a clean exit and no tritonserver left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, free_port

PALM_FRAME = "00564a8f-30da-4d82-8637-214c996645dd.jpg"
"""A HaGRID test frame annotated 'palm', GestureNet's 'stop'."""

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


def tritonservers(port: int) -> list[int]:
    """Process ids of tritonserver processes listening on HTTP ``port``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and cmdline[0].endswith(b"tritonserver") and f"--http-port={port}".encode() in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    ports = {name: free_port() for name in ("http", "grpc", "metrics", "ui")}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gesturekit.cli.main", "serve", "--http-port", str(ports["http"]),
             "--grpc-port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"]), "--ui-port",
             str(ports["ui"]), "--threads", "1"], stdout=out, stderr=subprocess.STDOUT)
    start = time.monotonic()
    while "ready" not in log.read_text() and process.poll() is None and time.monotonic() - start < 60:
        time.sleep(0.2)
    info = {"process": process, "ports": ports, "log": log, "startup_s": time.monotonic() - start}
    yield info
    if process.poll() is None:
        process.kill()
        process.wait()


def test_startup_prints_urls_and_is_ready_within_30_s(served: dict) -> None:
    text = served["log"].read_text()
    assert "ready" in text, text
    assert served["startup_s"] < 30
    ports = served["ports"]
    for line in (f"http: http://127.0.0.1:{ports['http']}", f"grpc: grpc://127.0.0.1:{ports['grpc']}",
                 f"metrics: http://127.0.0.1:{ports['metrics']}/metrics", f"ui: http://127.0.0.1:{ports['ui']}/"):
        assert line in text


def write_y4m(video: Path, out: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``video`` as a YUV4MPEG2 file (Chromium's fake webcam input)."""
    with av.open(str(video)) as container, open(out, "wb") as y4m:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 0:
                y4m.write(f"YUV4MPEG2 W{frame.width} H{frame.height} F25:1 Ip A1:1 C420jpeg\n".encode())
            if index == frames:
                break
            y4m.write(b"FRAME\n" + frame.to_ndarray(format="yuv420p").tobytes())
    return out


def test_page_shows_the_gesture_of_an_uploaded_frame_and_of_the_webcam(served: dict, data_root: Path,
                                                                       tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{served['ports']['ui']}/"
    clip = write_y4m(data_root / "video" / "asl_hand.25fps.mp4", tmp_path / "clip.y4m", 50)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.set_input_files("#file", str(data_root / "hagrid" / "frames" / PALM_FRAME))
        page.wait_for_function("document.getElementById('hands').textContent.includes('stop')", timeout=20000)
        assert "stop" in page.inner_text("#history")
        assert page.inner_text("#status") == ""
        browser.close()

        webcam = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-video-capture={clip}"]
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=webcam)
        page = browser.new_context(permissions=["camera"]).new_page()
        page.goto(url)
        page.click("#webcam")
        page.wait_for_function("/[a-z_]+ [01]\\.\\d\\d/.test(document.getElementById('hands').textContent)",
                               timeout=30000)
        page.wait_for_function("parseFloat(document.getElementById('fps').textContent) > 0", timeout=30000)
        assert page.inner_text("#status") == ""
        browser.close()


def test_sigterm_stops_cleanly_with_no_orphan(served: dict) -> None:
    process, port = served["process"], served["ports"]["http"]
    assert tritonservers(port), "the server runs a tritonserver"
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(30) == 0, served["log"].read_text()
    assert "stopping" in served["log"].read_text()
    assert tritonservers(port) == []


def test_bad_options_are_one_line_before_any_server_starts() -> None:
    result = subprocess.run([sys.executable, "-m", "gesturekit.cli.main", "serve", "--refine-boxes", "bogus",
                             "--detector", "no-such-model"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no-such-model" in result.stderr
    result = subprocess.run([sys.executable, "-m", "gesturekit.cli.main", "serve", "--refine-boxes", "bogus"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "primary.refine_boxes" in result.stderr


def test_libpython_is_found_beside_a_shared_or_a_debian_python(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend stub embeds libpython: found in LIBDIR (--enable-shared) or, as Debian and Ubuntu ship it for
    their statically linked system Python, in LIBDIR's multiarch directory; missing, one line naming it."""
    import sysconfig

    from gesturekit.errors import GesturekitError
    from gesturekit.serve import server

    name = f"libpython{sys.version_info.major}.{sys.version_info.minor}{sys.abiflags}.so.1.0"
    config = {"LIBDIR": str(tmp_path), "MULTIARCH": "x86_64-linux-gnu"}
    monkeypatch.setattr(sysconfig, "get_config_var", config.get)
    (tmp_path / name.replace(".so.1.0", ".a")).touch()  # a static library is not what the stub can load
    with pytest.raises(GesturekitError, match=f"no {name} beside this Python"):
        server.python_library_dir()
    (tmp_path / "x86_64-linux-gnu").mkdir()
    (tmp_path / "x86_64-linux-gnu" / name).touch()
    assert server.python_library_dir() == str(tmp_path / "x86_64-linux-gnu")
    (tmp_path / name).touch()
    assert server.python_library_dir() == str(tmp_path)


def test_numpy_2_is_refused_in_one_line_before_the_server_starts(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With numpy 2 the wheel's backend stub starts cleanly and then aborts on the first request (reproduced with
    numpy 2.2.6 here, and seen on the GPU machine's numpy 2.5): refused before anything starts."""
    import numpy

    from gesturekit.errors import GesturekitError
    from gesturekit.serve.server import Ports, TritonServer

    monkeypatch.setattr(numpy, "__version__", "2.2.6")
    server = TritonServer(tmp_path / "repo", Ports(), tmp_path)
    with pytest.raises(GesturekitError, match=r"^numpy 2\.2\.6: the Triton Python backend stub of nvidia-pytriton "
                                              r"needs numpy < 2 .*pip install 'numpy<2'$"):
        server.start()
    assert server.process is None and not (tmp_path / "backends").exists()
