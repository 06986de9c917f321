"""tools/release/compare_predictions.py: identical files compare identical; a moved box and a changed gesture show."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "release" / "compare_predictions.py"


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _compare(before: Path, after: Path) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), str(before), str(after)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_compare_predictions(tmp_path: Path) -> None:
    hand = {"bbox": [10.0, 20.0, 50.0, 80.0], "score": 0.9, "gesture": "fist", "gesture_score": 0.8, "track_id": None}
    records = [{"image": "a.jpg", "detections": [hand]}, {"image": "b.jpg", "detections": []}]
    before = _write(tmp_path / "before.jsonl", records)
    same = _compare(before, _write(tmp_path / "same.jsonl", records))
    assert (same["identical"], same["changed"], same["max_bbox_diff_px"]) == (2, 0, 0.0)
    moved = {**hand, "bbox": [10.0, 20.0, 52.5, 80.0], "gesture": "stop"}
    other = _compare(before, _write(tmp_path / "other.jsonl", [{"image": "a.jpg", "detections": [moved]},
                                                                 {"image": "c.jpg", "detections": []}]))
    assert (other["identical"], other["changed"], other["only_before"], other["only_after"]) == (0, 1, 1, 1)
    assert other["max_bbox_diff_px"] == 2.5 and other["gesture_changes"] == 1
