"""Frame sources: still images, image folders, video files, network streams and cameras.

Every video input goes through PyAV. :func:`open_source` checks the input when it is opened,
so a missing or unreadable file is one :class:`GesturekitError` before the pipeline starts.
While decoding, a corrupt packet is skipped and counted; a live stream that drops is reopened
with exponential back-off, a bounded number of times.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES, read_rgb

if TYPE_CHECKING:
    import av

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".mpg", ".mpeg"})
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "udp", "tcp", "srt", "http", "https"})
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass
class Frame:
    """One decoded frame (or still image) of one source.

    Attributes:
        source_id: position of the source on the command line / in the config.
        index: frame number in the source (image number for a folder), from 0.
        image: ``[H, W, 3]`` uint8 RGB.
        pts: presentation time in seconds (video only).
        name: image path relative to the input folder (still images only).
    """

    source_id: int
    index: int
    image: np.ndarray
    pts: float | None = None
    name: str | None = None


@dataclass
class SourceStats:
    """Counters of one source, updated by its decode thread."""

    frames: int = 0
    corrupt: int = 0
    dropped: int = 0
    reconnects: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Reconnect:
    """Exponential back-off for live sources: wait ``backoff_s * 2**k`` before try ``k``."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, self.max_backoff_s)


DEFAULT_RECONNECT = Reconnect()


class Source(ABC):
    """Base of all sources: an ``uri``, ``live`` and ``still`` flags, nominal ``fps``, counters."""

    uri: str
    live: bool = False
    still: bool = False
    fps: float | None = None

    def __init__(self, uri: str, source_id: int) -> None:
        self.uri = uri
        self.source_id = source_id
        self.stats = SourceStats()

    @abstractmethod
    def frames(self, max_frames: int | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
        """Yield decoded frames in order until the source ends, ``max_frames`` or ``stop``."""

    def close(self) -> None:
        """Release the underlying file or stream."""


class ImageSource(Source):
    """A single image file or every image under a folder (sorted, recursive); never tracked."""

    still = True

    def __init__(self, uri: str, source_id: int, paths: list[Path], root: Path) -> None:
        super().__init__(uri, source_id)
        self.paths = paths
        self.root = root

    def frames(self, max_frames: int | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            if (max_frames is not None and self.stats.frames >= max_frames) or (stop and stop.is_set()):
                return
            try:
                image = read_rgb(path)
            except GesturekitError as exc:  # unreadable, or over the pixel limit: skipped like a corrupt frame
                self.stats.corrupt += 1
                self.stats.error = str(exc)
                continue
            self.stats.frames += 1
            yield Frame(self.source_id, index, image, name=path.relative_to(self.root).as_posix())


class VideoSource(Source):
    """A video file, network stream or camera decoded with PyAV.

    Args:
        uri: path or URL given to ``av.open``.
        source_id: position of the source.
        live: drop frames rather than queue them, and reopen the stream when it drops or ends.
        av_format: container/device format (``"v4l2"`` for a camera), ``None`` to probe.
        reconnect: back-off policy for live sources.
    """

    def __init__(
        self,
        uri: str,
        source_id: int,
        *,
        live: bool = False,
        av_format: str | None = None,
        reconnect: Reconnect = DEFAULT_RECONNECT,
    ) -> None:
        super().__init__(uri, source_id)
        self.live = live
        self.av_format = av_format
        self.reconnect = reconnect
        self._container: av.container.InputContainer | None = None
        self._container = self._open_with_retries(threading.Event(), initial=True)
        if self._container is None:
            raise GesturekitError(f"{uri}: cannot open stream after {reconnect.attempts} retries: {self.stats.error}")
        rate = self._container.streams.video[0].average_rate
        self.fps = float(rate) if rate else None

    def _open(self) -> av.container.InputContainer:
        import av  # here: a run of images never pays for loading FFmpeg

        options = {"rtsp_transport": "tcp"} if self.uri.startswith("rtsp") else {}
        timeout = (10.0, 5.0) if self.live else None
        container = av.open(self.uri, format=self.av_format, options=options, timeout=timeout)
        if not container.streams.video:
            container.close()
            raise GesturekitError(f"{self.uri}: no video stream")
        return container

    def _open_with_retries(self, stop: threading.Event, initial: bool) -> av.container.InputContainer | None:
        """Open the input; a file fails at once, a live source retries with back-off.

        Returns ``None`` when a live source is still down after every retry, or on ``stop``.
        ``stats.reconnects`` counts every try but the source's first open.
        """
        import av

        for attempt in range(self.reconnect.attempts + 1 if self.live else 1):
            if attempt and stop.wait(self.reconnect.delay(attempt - 1)):
                return None
            if attempt or not initial:
                self.stats.reconnects += 1
            try:
                return self._open()
            except FileNotFoundError:
                raise GesturekitError(f"{self.uri}: no such file") from None
            except (av.FFmpegError, OSError) as exc:
                if not self.live:
                    reason = getattr(exc, "strerror", None) or str(exc)
                    raise GesturekitError(f"{self.uri}: cannot read video: {reason}") from None
                self.stats.error = f"{type(exc).__name__}: {exc}"
        return None

    def _decode(self, container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
        """Decoded frames of one connection; corrupt packets and frames are counted and skipped."""
        import av

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                self.stats.corrupt += 1
                continue
            for frame in decoded:
                if frame.is_corrupt:
                    self.stats.corrupt += 1
                    continue
                yield frame

    def frames(self, max_frames: int | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
        import av

        stop = stop or threading.Event()
        index = 0
        # One reformatter for the whole stream keeps its swscale context between frames (a
        # fresh one per frame set it up again each time), and threads=1 keeps swscale from
        # starting a thread per core that competes with inference; the pixels are unchanged.
        to_rgb = av.video.reformatter.VideoReformatter()
        while self._container is not None:
            container = self._container
            rate = container.streams.video[0].average_rate
            try:
                for frame in self._decode(container):
                    if (max_frames is not None and index >= max_frames) or stop.is_set():
                        return
                    pts = frame.time if frame.time is not None else (index / float(rate) if rate else None)
                    self.stats.frames += 1
                    yield Frame(self.source_id, index, to_rgb.reformat(frame, format="rgb24", threads=1).to_ndarray(), pts=pts)
                    index += 1
                if not self.live:
                    self._check_length(container, index)
            except av.FFmpegError as exc:
                if not self.live:
                    self.stats.error = f"stopped at frame {index}: {exc}"
                    return
            finally:
                container.close()
                self._container = None
            if not self.live or stop.is_set():
                return
            self._container = self._open_with_retries(stop, initial=False)
            if self._container is None and not stop.is_set():
                self.stats.error = f"gave up reconnecting after {self.reconnect.attempts} retries"

    def _check_length(self, container: av.container.InputContainer, decoded: int) -> None:
        """Say so when a file ended before the frames its index lists (a truncated file whose
        index is at the front decodes to its cut without any error)."""
        listed = container.streams.video[0].frames
        if listed and decoded + self.stats.corrupt < listed and self.stats.error is None:
            self.stats.error = f"ended after {decoded} of the {listed} frames its index lists (truncated file?)"

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _image_source(path: Path, uri: str, source_id: int) -> ImageSource:
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise GesturekitError(f"{uri}: no images in folder")
        return ImageSource(uri, source_id, paths, path)
    return ImageSource(uri, source_id, [path], path.parent)


def open_source(spec: str, source_id: int = 0, *, reconnect: Reconnect = DEFAULT_RECONNECT) -> Source:
    """Open one input by what it looks like.

    ``3`` or ``/dev/video3`` is a V4L2 camera; ``rtsp://``, ``rtmp://``, ``udp://`` and
    ``http(s)://`` (unless the path ends in a video suffix) are live streams; a folder is an
    image folder; a file with an image suffix is one image; any other file is a video.

    Raises:
        GesturekitError: the file is missing or unreadable (one line naming it).
    """
    if spec.isdigit() or spec.startswith("/dev/video"):
        device = f"/dev/video{spec}" if spec.isdigit() else spec
        return VideoSource(device, source_id, live=True, av_format="v4l2", reconnect=reconnect)
    match = _URL.match(spec)
    if match and match.group(1).lower() != "file":
        scheme = match.group(1).lower()
        path_part = spec.split("?", 1)[0]
        live = scheme in LIVE_SCHEMES and not (
            scheme in ("http", "https") and Path(path_part).suffix.lower() in VIDEO_SUFFIXES
        )
        return VideoSource(spec, source_id, live=live, reconnect=reconnect)
    path = Path(spec[len("file://"):] if match else spec)
    if not path.exists():
        raise GesturekitError(f"{spec}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return _image_source(path, spec, source_id)
    return VideoSource(str(path), source_id)
