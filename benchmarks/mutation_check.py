"""Mutation check of the contract tests: deliberately broken copies of the geometry, label formats and metrics
must each make the suite fail.

    python benchmarks/mutation_check.py            # every mutation (about 30 runs of three test files)
    python benchmarks/mutation_check.py G1 M4      # some of them

Each mutation (a swapped coordinate, a clip moved by one pixel, a comparison changed at a threshold, ...) is
applied to a copy of the committed package (``git archive HEAD``) in a temporary folder, never to the working
tree, and the contract tests run against that copy (``PYTHONPATH``), with a fixed hypothesis seed. A mutation
that no test fails is reported as missed. Results: benchmarks/results/mutation_check.json.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common import DATA, REPO, RESULTS

from gesturekit.io import atomic_write_json

OUT = RESULTS / "mutation_check.json"
TESTS = ["tests/test_geometry_contracts.py", "tests/test_label_roundtrip.py", "tests/test_metrics_contracts.py"]
WIDEN = "gesturekit/data/crops.py"
GEOMETRY = "gesturekit/data/geometry.py"
DETECTOR = "gesturekit/runtime/detector.py"
CROP = "gesturekit/runtime/classifier.py"
YOLO = "gesturekit/data/formats/yolo.py"
KITTI = "gesturekit/data/formats/kitti.py"
METRICS = "gesturekit/metrics/detection.py"
MIN_SIZE = "return ((boxes[:, 2] - boxes[:, 0]) < min_width) | ((boxes[:, 3] - boxes[:, 1]) < min_height)"
YOLO_VALUES = "values = (cx, cy, box.width / width, box.height / height)"
MUTATIONS = [  # (id and description, file under src/, text, replacement)
    ("G1 widen_box: x2 clipped at W instead of W-1", WIDEN,
     "nx2 = int(min(max(round(right), nx1 + 1), width - 1))", "nx2 = int(min(max(round(right), nx1 + 1), width))"),
    ("G2 widen_box: y1 clipped one pixel lower (H-1)", WIDEN,
     "ny1 = int(max(0, min(round(top), height - 2)))", "ny1 = int(max(0, min(round(top), height - 1)))"),
    ("G3 widen_box: centre x and y swapped", WIDEN,
     "cx, cy = (x1 + x2) / 2, (y1 + y2) / 2", "cy, cx = (x1 + x2) / 2, (y1 + y2) / 2"),
    ("G4 widen_box: margin added before the enlargement", WIDEN,
     "w, h = (x2 - x1) * enlarge_ratio, (y2 - y1) * enlarge_ratio",
     "w, h = (x2 - x1 + 2 * margin_px) * enlarge_ratio - 2 * margin_px, "
     "(y2 - y1 + 2 * margin_px) * enlarge_ratio - 2 * margin_px"),
    ("G5 widen_box: left edge one pixel right", WIDEN,
     "nx1 = int(max(0, min(round(left), width - 2)))", "nx1 = int(max(0, min(round(left) + 1, width - 2)))"),
    ("G6 widen_box: squared on the shorter side", WIDEN, "w = h = max(w, h)", "w = h = min(w, h)"),
    ("G7 frame_scale: the 4/3 cap on the short side", GEOMETRY,
     "size * 4 / 3 / max(height, width))", "size * 4 / 3 / min(height, width))"),
    ("G8 letterbox_geometry: floor instead of round", GEOMETRY,
     "new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))",
     "new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))"),
    ("G9 pad_to_stride: a whole extra stride at exact multiples", GEOMETRY,
     "return math.ceil(length / stride) * stride", "return (int(length // stride) + 1) * stride"),
    ("G10 detector: x clipped to the frame height", DETECTOR,
     "boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)", "boxes[:, 0::2] = boxes[:, 0::2].clip(0, height)"),
    ("G11 detector: boxes mapped back by multiplying by the scale", DETECTOR,
     'boxes = found["boxes"] / scale', 'boxes = found["boxes"] * scale'),
    ("G12 classifier crop: one more row and column", CROP,
     "return frame[y1:y2, x1:x2]", "return frame[y1:y2 + 1, x1:x2 + 1]"),
    ("G13 classifier crop: x and y of the region swapped", CROP,
     "return frame[y1:y2, x1:x2]", "return frame[x1:x2, y1:y2]"),
    ("L1 YOLO reader: x scaled by the height", YOLO,
     "x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height", "x1, y1 = (cx - w / 2) * height, (cy - h / 2) * height"),
    ("L2 YOLO writer: cx and cy swapped", YOLO, YOLO_VALUES, "values = (cy, cx, box.width / width, box.height / height)"),
    ("L3 YOLO writer: half the width", YOLO, YOLO_VALUES,
     "values = (cx, cy, box.width / width / 2, box.height / height)"),
    ("L4 KITTI writer: x1 and y1 swapped", KITTI,
     'coords = " ".join(format_number(v) for v in (box.x1, box.y1, box.x2, box.y2))',
     'coords = " ".join(format_number(v) for v in (box.y1, box.x1, box.x2, box.y2))'),
    ("L5 KITTI reader: box fields shifted by one", KITTI,
     "return check_box(fields[0], *values[3:7], where)", "return check_box(fields[0], *values[2:6], where)"),
    ("L6 KITTI numbers: one decimal", KITTI,
     'text = f"{value:.2f}".rstrip("0").rstrip(".")', 'text = f"{value:.1f}".rstrip("0").rstrip(".")'),
    ("L7 VOC writer: xmax and ymax swapped", "gesturekit/data/formats/voc.py",
     "for tag, value in zip(CORNERS, (box.x1, box.y1, box.x2, box.y2)):",
     "for tag, value in zip(CORNERS, (box.x1, box.y1, box.y2, box.x2)):"),
    ("M1 matching: IoU > threshold instead of >=", METRICS,
     "if ious[d, g] < iou_threshold:", "if ious[d, g] <= iou_threshold:"),
    ("M2 KITTI minimum size: <= instead of <", METRICS, MIN_SIZE, MIN_SIZE.replace(" < ", " <= ")),
    ("M3 KITTI minimum size: width against min_height", METRICS, MIN_SIZE,
     MIN_SIZE.replace("min_width", "MIN").replace("min_height", "min_width").replace("MIN", "min_height")),
    ("M4 matching: duplicates count as true positives", METRICS,
     "            elif not matched[g]:\n                status[d] = _TP", "            else:\n                status[d] = _TP"),
    ("M5 matching: detections ranked by ascending score", METRICS,
     'keep = keep[np.argsort(-im.scores[keep], kind="stable")]', 'keep = keep[np.argsort(im.scores[keep], kind="stable")]'),
    ("M6 VOC AP without the precision envelope", METRICS,
     "mpre = np.maximum.accumulate(mpre[::-1])[::-1]", "mpre = mpre"),
    ("M7 KITTI AP on 41 points, recall 0 included", METRICS,
     "_KITTI_RECALLS = np.arange(1, 41) / 40.0", "_KITTI_RECALLS = np.arange(0, 41) / 40.0"),
    ("M8 box_iou: the intersection not subtracted from the union", "gesturekit/boxes.py",
     "union = area_a[:, None] + area_b[None, :] - inter", "union = area_a[:, None] + area_b[None, :]"),
    ("M9 box_iou: the intersection's x2 and y2 mixed", "gesturekit/boxes.py",
     "rb = np.minimum(a[:, None, 2:], b[None, :, 2:])", "rb = np.minimum(a[:, None, 2:], b[None, :, [3, 2]])"),
    ("M10 classification: recall over the predictions", "gesturekit/metrics/classification.py",
     "recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)",
     "recall = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)"),
    ("M11 COCO AP: boxes given as xyxy instead of xywh", METRICS,
     '"bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],', '"bbox": [box[0], box[1], box[2], box[3]],'),
]


def committed_tree(dest: Path) -> str:
    """``src`` and ``tests`` of HEAD into ``dest`` (the zoo's weights left out); returns the commit."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "HEAD", "src", "tests", "pyproject.toml"], cwd=REPO,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, members=[m for m in tar.getmembers() if "/models/zoo" not in m.name],
                       filter="data")
    return commit


def run_tests(root: Path) -> tuple[bool, str | None]:
    """The contract tests against the package under ``root``: (passed, the first failing test)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src"),
           "GESTUREKIT_DATA": str(DATA)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:warnings",
                           "--hypothesis-seed=0", *TESTS], cwd=root, env=env, capture_output=True, text=True)
    failed = [line.split(" - ")[0].removeprefix("FAILED ") for line in proc.stdout.splitlines()
              if line.startswith("FAILED")]
    return proc.returncode == 0, failed[0] if failed else None


def run_mutation(root: Path, rel: str, old: str, new: str) -> tuple[bool, str | None]:
    """Apply one mutation, run the tests, restore the file; returns (caught, the first failing test)."""
    path = root / "src" / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{rel}: the text to mutate occurs {text.count(old)} times (the code moved?): {old!r}")
    path.write_text(text.replace(old, new))
    try:
        passed, failed = run_tests(root)
    finally:
        path.write_text(text)
    return not passed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="mutation ids to run (default: all), e.g. G1 M4")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.ids or m[0].split()[0] in args.ids]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        commit = committed_tree(root)
        zoo = root / "src" / "gesturekit" / "models" / "zoo"
        zoo.parent.mkdir(parents=True, exist_ok=True)
        zoo.symlink_to(REPO / "src" / "gesturekit" / "models" / "zoo")
        passed, failed = run_tests(root)
        if not passed:
            raise SystemExit(f"the tests fail on the unmutated package ({failed}): fix them first")
        results = []
        for name, rel, old, new in chosen:
            caught, by = run_mutation(root, rel, old, new)
            results.append({"mutation": name, "file": f"src/{rel}", "caught": caught, "failing_test": by})
            print(f"{'caught' if caught else 'MISSED'}  {name}  {by or ''}", flush=True)
    missed = [r["mutation"] for r in results if not r["caught"]]
    atomic_write_json(OUT, {"commit": commit, "tests": TESTS, "mutations": len(results),
                            "caught": len(results) - len(missed), "missed": missed, "results": results})
    print(f"{len(results) - len(missed)} of {len(results)} mutations caught; {OUT}")


if __name__ == "__main__":
    main()
