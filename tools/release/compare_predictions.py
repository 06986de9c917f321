"""Compare two ``gesturekit infer --out-json`` files of the same inputs, e.g. from two revisions of the code.

A refactoring must leave the app's outputs as they were; this says whether it did: per image or frame, whether the
detections are the same, and the largest box and score difference and the gesture changes where they are not.

    python tools/release/compare_predictions.py before.jsonl after.jsonl [--out comparison.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gesturekit.io import atomic_write_json
from gesturekit.pipeline.predictions import read_predictions


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record.get("image"),) if "image" in record else (record.get("source"), record.get("frame"))


def compare(before: Path, after: Path) -> dict[str, Any]:
    """Counts of identical records, and the largest differences of the others (matched by image or frame)."""
    old = {_key(r): r["detections"] for r in read_predictions(before)}
    new = {_key(r): r["detections"] for r in read_predictions(after)}
    changed = [k for k in old.keys() & new.keys() if old[k] != new[k]]
    box = score = 0.0
    gestures = counts = 0
    for key in changed:
        if len(old[key]) != len(new[key]):
            counts += 1
            continue
        for a, b in zip(old[key], new[key]):
            box = max(box, *(abs(u - v) for u, v in zip(a["bbox"], b["bbox"])))
            score = max(score, abs(a["score"] - b["score"]))
            gestures += a.get("gesture") != b.get("gesture")
    return {"before": str(before), "after": str(after), "records": len(old), "only_before": len(old.keys() - new),
            "only_after": len(new.keys() - old), "identical": len(old.keys() & new.keys()) - len(changed),
            "changed": len(changed), "changed_hand_count": counts, "max_bbox_diff_px": box,
            "max_score_diff": score, "gesture_changes": gestures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path, help="also write the comparison as JSON here")
    args = parser.parse_args()
    result = compare(args.before, args.after)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
