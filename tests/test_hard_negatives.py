"""Mining detector false positives for a hand verifier, on real EgoHands frames with the shipped detector."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import kitti_line, write_kitti
from typer.testing import CliRunner

from gesturekit.boxes import box_iou
from gesturekit.cli.main import app
from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.evaluation.hard_negatives import BACKGROUND, mine_hard_negatives
from gesturekit.models import zoo
from gesturekit.runtime.loading import load_detector

DETECTOR = "hand-detector-pruned-int8"


@pytest.fixture(scope="module")
def hidden_hand_dataset(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Three EgoHands train frames as KITTI; the first hand of each frame is left out of its labels."""
    rows: dict[str, list[list[float]]] = {}
    with open(data_root / "egohands" / "train_labels.csv") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["filename"], []).append([float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
    names = [n for n in sorted(rows) if len(rows[n]) >= 2][:3]
    root = tmp_path_factory.mktemp("mine")
    write_kitti(root, {n: [kitti_line("hand", *b) for b in rows[n][1:]] for n in names}, {"train": names})
    for n in names:  # the real frames in place of the placeholder images
        (root / "images" / n).write_bytes((data_root / "egohands" / "images" / n).read_bytes())
    return root, {n: rows[n][0] for n in names}


def test_mined_boxes_overlap_no_label_and_include_the_hidden_hands(hidden_hand_dataset) -> None:
    root, hidden = hidden_hand_dataset
    annotations = read_kitti_dataset(root, "train")
    detector = load_detector(DETECTOR, score_threshold=0.05)
    mined, count = mine_hard_negatives([detector], annotations, iou_below=0.3, max_per_image=5)
    assert count == sum(len(a.boxes) - len(b.boxes) for a, b in zip(mined, annotations)) > 0
    found_hidden = 0
    for before, after in zip(annotations, mined):
        assert after.boxes[:len(before.boxes)] == before.boxes  # the labels are kept, in order
        extra = np.array([[b.x1, b.y1, b.x2, b.y2] for b in after.boxes[len(before.boxes):]])
        assert len(extra) <= 5 and all(b.label == BACKGROUND for b in after.boxes[len(before.boxes):])
        truth = np.array([[b.x1, b.y1, b.x2, b.y2] for b in before.boxes])
        assert (box_iou(extra, truth) < 0.3).all()
        assert (box_iou(extra, extra)[~np.eye(len(extra), dtype=bool)] < 0.7).all()  # no near-duplicates
        found_hidden += bool((box_iou(extra, [hidden[before.image.name]]) >= 0.5).any())
    assert found_hidden >= 2  # the unlabelled hands come back as the detector's "false positives"


def test_mine_cli_writes_a_kitti_dataset(hidden_hand_dataset, tmp_path: Path) -> None:
    root, _ = hidden_hand_dataset
    out = tmp_path / "mined"
    checkpoint = zoo.zoo_path("hand-detector-pruned") / "model.pt"  # a checkpoint runs on PyTorch
    result = CliRunner().invoke(app, ["data", "mine", str(root), "-o", str(out), "-m", DETECTOR,
                                      "-m", str(checkpoint), "--max-per-image", "2"])
    assert result.exit_code == 0, result.output
    written = read_kitti_dataset(out, "train")
    labels = [b.label for a in written for b in a.boxes]
    assert len(written) == 3 and 1 <= labels.count(BACKGROUND) <= 6
    assert set(labels) == {"hand", BACKGROUND}
    assert "background boxes mined" in result.output
