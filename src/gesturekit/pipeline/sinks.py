"""Outputs of the cascade app: JSON Lines, annotated video, live MJPEG preview, FPS meter.

Every sink has ``write(frame, hands, fps)`` and ``close()``; the app feeds each one every
processed frame of its source(s), in order, and closes it once, from the thread that wrote to it.
File sinks (:class:`FileSink`) put their file in place only when the run completes.
"""

from __future__ import annotations

import abc
import functools
import io
import queue
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gesturekit.errors import GesturekitError
from gesturekit.io import StagedFile
from gesturekit.pipeline.predictions import HandPrediction, JsonlWriter, prediction_record
from gesturekit.pipeline.sources import Frame

if TYPE_CHECKING:
    import av

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


class Sink(Protocol):
    def write(self, frame: Frame, hands: Sequence[HandPrediction], fps: float | None) -> None: ...

    def close(self) -> None: ...


def output_path(path: Path, source_id: int, num_sources: int) -> Path:
    """``path`` itself for one source; ``<stem>.<source_id><suffix>`` with several."""
    if num_sources == 1:
        return path
    return path.with_name(f"{path.stem}.{source_id}{path.suffix}")


def draw_hands(image: np.ndarray, hands: Sequence[HandPrediction], fps: float | None = None) -> np.ndarray:
    """Draw boxes, ``#track gesture score`` labels and an FPS line on a copy of ``image``.

    Boxes are drawn into the array itself and each label is rendered on a patch of its own size:
    a round trip of the whole frame through a PIL image would cost more than the encoder.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    canvas = image.copy()
    size = max(10, min(canvas.shape[:2]) // 24)
    for hand in hands:
        color = PALETTE[(hand.track_id or 0) % len(PALETTE)]
        _outline(canvas, hand.bbox, color, max(1, size // 6))
        parts = [f"#{hand.track_id}" if hand.track_id is not None else ""]
        parts.append(f"{hand.gesture} {hand.gesture_score:.2f}" if hand.gesture else f"hand {hand.score:.2f}")
        _label(canvas, (hand.bbox[0], max(0.0, hand.bbox[1] - size - 2)), " ".join(p for p in parts if p),
               size, background=color, ink=(0, 0, 0))
    if fps is not None:
        _label(canvas, (2, 2), f"{fps:.1f} FPS", size, background=(0, 0, 0), ink=(255, 255, 255))
    return canvas


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _outline(canvas: np.ndarray, bbox: Sequence[float], color: tuple[int, int, int], width: int) -> None:
    """A rectangle's outline ``width`` pixels thick, inside the box's edges (as PIL draws it), clipped to the frame."""
    height, frame_width = canvas.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in bbox)
    x1, x2 = max(0, min(x1, x2)), min(frame_width - 1, max(x1, x2))
    y1, y2 = max(0, min(y1, y2)), min(height - 1, max(y1, y2))
    if x1 > x2 or y1 > y2:
        return
    canvas[y1:min(y1 + width, y2 + 1), x1:x2 + 1] = color
    canvas[max(y2 - width + 1, y1):y2 + 1, x1:x2 + 1] = color
    canvas[y1:y2 + 1, x1:min(x1 + width, x2 + 1)] = color
    canvas[y1:y2 + 1, max(x2 - width + 1, x1):x2 + 1] = color


def _label(canvas: np.ndarray, origin: tuple[float, float], text: str, size: int,
           background: tuple[int, int, int], ink: tuple[int, int, int]) -> None:
    """``text`` at ``origin`` on a filled box the size of its ink (PIL's ``textbbox``), clipped to the frame."""
    pixels, left, top = _label_pixels(text, size, background, ink)
    x, y = int(origin[0]) + left, int(origin[1]) + top
    height, width = canvas.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + pixels.shape[1], width), min(y + pixels.shape[0], height)
    if x0 < x1 and y0 < y1:
        canvas[y0:y1, x0:x1] = pixels[y0 - y:y1 - y, x0 - x:x1 - x]


@functools.lru_cache(maxsize=256)
def _label_pixels(text: str, size: int, background: tuple[int, int, int],
                  ink: tuple[int, int, int]) -> tuple[np.ndarray, int, int]:
    """A label's inked box as read-only ``[h, w, 3]`` RGB pixels, and its offset from the text origin.

    Cached: a track's label and the FPS line repeat over many frames, and rendering the glyphs
    (FreeType) cost more than the rest of the drawing.
    """
    font = _font(size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    patch = Image.new("RGB", (max(right, 1), max(bottom, 1)), background)
    ImageDraw.Draw(patch).text((0, 0), text, fill=ink, font=font)
    pixels = np.array(patch)[top:bottom, left:right]
    pixels.flags.writeable = False
    return pixels, left, top


class FileSink(abc.ABC):
    """A sink that builds a file over the run (:class:`StagedFile`): what :meth:`close` does with it
    depends on how the run ended, and it says so in one line (``None`` when the file is in place)."""

    path: Path

    @abc.abstractmethod
    def write(self, frame: Frame, hands: Sequence[HandPrediction], fps: float | None) -> None: ...

    @abc.abstractmethod
    def close(self, complete: bool = True) -> str | None:
        """Finish the file: at ``path`` when ``complete``, else beside it as a partial file."""

    def _outcome(self, where: Path | None) -> str | None:
        if where is None:
            return f"{self.path}: not written (no frame processed)"
        if where != self.path:
            return f"{self.path}: left unchanged; partial results in {where}"
        return None


class JsonSink(FileSink):
    """Prediction lines of one source (see :mod:`gesturekit.pipeline.predictions`)."""

    def __init__(self, path: Path, uri: str) -> None:
        self.writer = JsonlWriter(path)
        self.path = self.writer.path
        self.uri = uri

    def write(self, frame: Frame, hands: Sequence[HandPrediction], fps: float | None) -> None:
        if frame.name is not None:
            record = prediction_record(hands, image=frame.name)
        else:
            record = prediction_record(hands, source=self.uri, frame=frame.index, pts=frame.pts)
        self.writer.write(record)

    def close(self, complete: bool = True) -> str | None:
        if self.writer.closed:
            return None
        return self._outcome(self.writer.close(complete))


_END = object()
_MP4_SUFFIXES = frozenset({".mp4", ".mov", ".m4v"})
# Fragmented MP4: each fragment (a second at most) is playable once written, so even a killed run
# leaves a video that plays up to its last second; no index is written at the end.
_MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000",
                "flush_packets": "1"}
_X264_OPTIONS = {"preset": "ultrafast"}  # the annotated copy is for viewing; encoding stays cheap


class VideoSink(FileSink):
    """Annotated H.264 (MPEG-4 part 2 if libx264 is missing) video of one source.

    Frames are drawn and encoded in the sink's own thread, which owns the encoder from its first
    frame (that frame's size fixes the video size; odd sizes are padded by one black pixel) to its
    last; :meth:`write` only queues the frame, waiting when ``queue_size`` frames are pending.
    """

    def __init__(self, path: Path, fps: float | None = None, queue_size: int = 8) -> None:
        self.staged = StagedFile(path)
        self.path = self.staged.path
        self.fps = Fraction(fps or 25).limit_denominator(1001)
        self.frames = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False

    def write(self, frame: Frame, hands: Sequence[HandPrediction], fps: float | None) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode_all, name=f"video-{self.path.name}", daemon=True)
            self._thread.start()
        self._queue.put((frame.image, list(hands), fps))
        self.frames += 1

    def _open(self, width: int, height: int) -> tuple[av.container.OutputContainer, av.video.stream.VideoStream]:
        import av  # here: JSON-only runs never pay for loading FFmpeg

        options = _MP4_OPTIONS if self.path.suffix.lower() in _MP4_SUFFIXES else {}
        try:
            container = av.open(str(self.staged.tmp), "w", options=options)
        except (av.FFmpegError, ValueError) as exc:
            raise GesturekitError(f"{self.path}: cannot write video: {exc}") from None
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=self.fps, options=_X264_OPTIONS if codec == "libx264" else {})
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        return container, stream

    def _encode_all(self) -> None:
        """The encoder thread: draw and encode queued frames until the end marker, then finish the
        file; after an error it keeps taking frames (dropping them) so that no writer waits forever."""
        container = stream = None
        count = 0
        try:
            while (item := self._queue.get()) is not _END:
                if self._error is not None:
                    continue
                try:
                    image = draw_hands(*item)
                    if container is None or stream is None:
                        container, stream = self._open(image.shape[1], image.shape[0])
                    self._encode(container, stream, image, count)
                    count += 1
                except BaseException as exc:  # noqa: BLE001 - raised by the next write() or close()
                    self._error = exc
            if container is not None and stream is not None:  # also after an error: the frames before it
                for packet in stream.encode():
                    container.mux(packet)
        except BaseException as exc:  # noqa: BLE001 - raised by close()
            self._error = self._error or exc
        finally:
            if container is not None:
                try:
                    container.close()
                except BaseException as exc:  # noqa: BLE001 - raised by close()
                    self._error = self._error or exc

    def _encode(self, container: av.container.OutputContainer, stream: av.video.stream.VideoStream,
                image: np.ndarray, index: int) -> None:
        """Encode one drawn frame as the stream's ``index``-th.

        The array is wrapped, not copied (``from_ndarray`` copies it twice), and converted to yuv420p
        here, in this thread, sampling chroma rather than averaging it (``POINT``; the luma is the same):
        the encoder's own conversion runs on its thread count (every core) and averages, about 1.5x the
        CPU for no visible difference. With inference keeping every core busy, this cost is what the
        run loses to its video.
        """
        height, width = stream.height, stream.width
        if image.shape[:2] != (height, width):
            padded = np.zeros((height, width, 3), np.uint8)
            h, w = min(height, image.shape[0]), min(width, image.shape[1])
            padded[:h, :w] = image[:h, :w]
            image = padded
        import av

        video_frame = av.VideoFrame.from_numpy_buffer(image, format="rgb24").reformat(
            format="yuv420p", interpolation="POINT", threads=1)
        video_frame.pts = index
        video_frame.time_base = 1 / self.fps
        for packet in stream.encode(video_frame):
            container.mux(packet)

    def close(self, complete: bool = True) -> str | None:
        """Let the encoder thread finish every queued frame and the file, then put the file in place
        (or beside it when not ``complete``); raise the encoder's error if it had one."""
        if self._closed:
            return None
        self._closed = True
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
        if self.frames == 0:
            self.staged.discard()
            return self._outcome(None)
        if self._error is not None:
            where = self.staged.keep_partial()
            reason = str(self._error) if isinstance(self._error, GesturekitError) else repr(self._error)
            raise GesturekitError(f"{reason}; partial video in {where}") from self._error
        return self._outcome(self.staged.commit() if complete else self.staged.keep_partial())


class _Latest:
    """The newest JPEG of every source, with a condition to wait for the next one."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpegs: dict[int, bytes] = {}
        self.closed = False


def _handler(latest: _Latest, num_sources: int, timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # a client that sends nothing, or stops reading, is dropped after this

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/", "/index.html"):
                imgs = "".join(f'<img src="/{i}.mjpg" style="max-width:48%">' for i in range(num_sources))
                body = f"<html><body style='background:#111'>{imgs}</body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            name = self.path.lstrip("/").removesuffix(".mjpg")
            if not name.isdigit() or int(name) >= num_sources:
                self.send_error(404)
                return
            self._stream(int(name))

        def _stream(self, source_id: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            last = None
            while True:
                with latest.cond:
                    latest.cond.wait_for(lambda seen=last: latest.closed or latest.jpegs.get(source_id) is not seen,
                                         1.0)
                    if latest.closed:
                        return
                    jpeg = latest.jpegs.get(source_id)
                if jpeg is None or jpeg is last:
                    continue
                last = jpeg
                try:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                    self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                except OSError:  # gone, or not reading (timeout)
                    return

    return Handler


class PreviewServer:
    """Live MJPEG preview on ``http://127.0.0.1:<port>/`` (``/<source>.mjpg`` per source).

    Bound to localhost only; served from a daemon thread; one instance serves all sources. A
    connection idle for ``idle_timeout_s`` (no request, or a stream it stopped reading) is closed.
    """

    def __init__(self, port: int, num_sources: int, quality: int = 80, idle_timeout_s: float = 10.0) -> None:
        self.quality = quality
        self._latest = _Latest()
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self._latest, num_sources, idle_timeout_s))
        except OSError as exc:
            raise GesturekitError(f"--preview-port {port}: cannot listen: {exc.strerror}") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview", daemon=True)
        self._thread.start()

    def write(self, frame: Frame, hands: Sequence[HandPrediction], fps: float | None) -> None:
        buffer = io.BytesIO()
        Image.fromarray(draw_hands(frame.image, hands, fps)).save(buffer, format="JPEG", quality=self.quality)
        with self._latest.cond:
            self._latest.jpegs[frame.source_id] = buffer.getvalue()
            self._latest.cond.notify_all()

    def close(self) -> None:
        with self._latest.cond:
            self._latest.closed = True
            self._latest.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()


class PerfMeter:
    """Per-source FPS, printed every ``interval_s`` like DeepStream's perf measurement:
    ``**PERF: <fps over the interval> (<fps since start>)`` per source, after its number (``labels``, default
    its position: a worker process that runs some of a run's sources prints their numbers in the run)."""

    def __init__(self, uris: Sequence[str], interval_s: float, emit: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic, labels: Sequence[int] | None = None) -> None:
        self.uris = list(uris)
        self.labels = list(labels) if labels is not None else list(range(len(self.uris)))
        self.interval_s = interval_s
        self.emit = emit
        self.clock = clock
        self.start = self.last_report = clock()
        self.total = [0] * len(self.uris)
        self.window = [0] * len(self.uris)
        self.recent = [0.0] * len(self.uris)
        self.last_tick = [self.start] * len(self.uris)

    def tick(self, source_id: int) -> None:
        """Count one processed frame of ``source_id``; report when the interval has passed."""
        self.total[source_id] += 1
        self.window[source_id] += 1
        now = self.last_tick[source_id] = self.clock()
        if self.interval_s > 0 and now - self.last_report >= self.interval_s:
            self.report(now)

    def fps(self, source_id: int) -> float:
        """Frames per second of the last interval (since start before the first report)."""
        if self.recent[source_id]:
            return self.recent[source_id]
        elapsed = self.clock() - self.start
        return self.total[source_id] / elapsed if elapsed > 0 else 0.0

    def average(self, source_id: int) -> float:
        """Frames per second from the start to the source's last frame, so that a source that
        ended early is not diluted by the time the others ran on."""
        elapsed = self.last_tick[source_id] - self.start
        return self.total[source_id] / elapsed if elapsed > 0 else 0.0

    def report(self, now: float) -> None:
        span = max(now - self.last_report, 1e-9)
        elapsed = max(now - self.start, 1e-9)
        self.recent = [n / span for n in self.window]
        fields = [f"{label}: {self.recent[i]:.2f} ({self.total[i] / elapsed:.2f})"
                  for i, label in enumerate(self.labels)]
        self.emit("**PERF: " + "\t".join(fields))
        self.window = [0] * len(self.uris)
        self.last_report = now
