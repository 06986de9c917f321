"""The public prediction format: one JSON line per image or video frame.

Image line: ``{"image": rel_path, "detections": [...]}``; video line:
``{"source": uri, "frame": n, "pts": seconds, "detections": [...]}``; a detection is
``{"bbox": [x1, y1, x2, y2], "score": s, "gesture": g | null, "gesture_score": p | null,
"track_id": k | null}`` in pixels of the original frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gesturekit.errors import GesturekitError
from gesturekit.io import StagedFile


@dataclass(frozen=True)
class HandPrediction:
    """One hand found by the cascade.

    Attributes:
        bbox: the detector's original ``(x1, y1, x2, y2)`` in pixels of the original frame.
        score: detector confidence.
        gesture: classifier label, ``None`` when the hand was not classified (crop too small,
            classifier disabled).
        gesture_score: classifier probability of ``gesture`` (after voting when tracked).
        track_id: per-source track id, ``None`` for still images or without a tracker.
    """

    bbox: tuple[float, float, float, float]
    score: float
    gesture: str | None = None
    gesture_score: float | None = None
    track_id: int | None = None


def _round(value: float | None, ndigits: int) -> float | None:
    return None if value is None else round(float(value), ndigits)


def prediction_record(
    detections: Sequence[HandPrediction],
    *,
    image: str | None = None,
    source: str | None = None,
    frame: int | None = None,
    pts: float | None = None,
) -> dict[str, Any]:
    """The one place that builds a prediction line (as a dict).

    Give ``image`` (path relative to the input folder) for a still image, or ``source``,
    ``frame`` and ``pts`` for a video frame, or neither for an image held in memory (the line
    is then ``{"detections": [...]}``). Boxes are rounded to 2 decimals, scores to 4,
    ``pts`` to milliseconds.
    """
    if image is not None and source is not None:
        raise ValueError("give image= or source=, not both")
    head: dict[str, Any] = {}
    if image is not None:
        head = {"image": image}
    elif source is not None:
        if frame is None:
            raise ValueError("a video line needs frame=")
        head = {"source": source, "frame": int(frame), "pts": _round(pts, 3)}
    head["detections"] = [
        {
            "bbox": [round(float(v), 2) for v in d.bbox],
            "score": round(float(d.score), 4),
            "gesture": d.gesture,
            "gesture_score": _round(d.gesture_score, 4),
            "track_id": None if d.track_id is None else int(d.track_id),
        }
        for d in detections
    ]
    return head


class JsonlWriter:
    """Prediction lines for ``path``, each flushed as written to a staged file (:class:`StagedFile`).

    A killed run leaves only complete lines, in the hidden staged file; :meth:`close` decides
    where the file goes, so an existing ``path`` is only ever replaced by a finished run's file.
    """

    def __init__(self, path: str | Path) -> None:
        self.staged = StagedFile(path)
        self.path = self.staged.path
        self._file: IO[str] | None = open(self.staged.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        """Write one line (a dict from :func:`prediction_record`) and flush it."""
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._file.write(json.dumps(record, separators=(", ", ": ")) + "\n")
        self._file.flush()
        self.lines += 1

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self, complete: bool = True) -> Path | None:
        """Put the file at ``path`` (a complete run), at its partial path (a failed run), or nowhere
        (no line written); return where it went. Safe to call twice."""
        if self._file is None:
            return None
        self._file.close()
        self._file = None
        if not self.lines:
            self.staged.discard()
            return None
        return self.staged.commit() if complete else self.staged.keep_partial()


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read a prediction JSON Lines file; a bad line is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise GesturekitError(f"{path}: prediction file not found")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise GesturekitError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
    return records
