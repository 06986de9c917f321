import json

import numpy as np
import pytest

from gesturekit.boxes import box_iou
from gesturekit.errors import GesturekitError
from gesturekit.metrics.detection import CURVE_POINTS, evaluate_detection, voc_ap
from gesturekit.metrics.plots import save_pr_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def gt(boxes, labels=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return {"boxes": boxes, "labels": np.zeros(len(boxes), int) if labels is None else np.asarray(labels)}


def pred(boxes, scores, labels=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return {
        "boxes": boxes,
        "scores": np.asarray(scores, dtype=float),
        "labels": np.zeros(len(boxes), int) if labels is None else np.asarray(labels),
    }


def test_voc_ap_all_point_interpolation():
    assert voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.75)
    # the envelope lifts the dip at recall 0.5 to the later 0.75
    assert voc_ap([0.25, 0.5, 0.75], [1.0, 0.5, 0.75]) == pytest.approx(0.25 + 0.25 * 0.75 + 0.25 * 0.75)
    assert voc_ap([], []) == 0.0


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], float)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_perfect_predictions():
    gts = [gt([[0, 0, 50, 50], [60, 60, 120, 140]], [0, 1]), gt([[10, 10, 40, 80]], [1])]
    preds = [pred(g["boxes"], [0.9] * len(g["boxes"]), g["labels"]) for g in gts]
    r = evaluate_detection(preds, gts, ["a", "b"])
    for key in ("ap50", "ap50_95", "coco_ap50", "kitti_ap"):
        assert r[key] == pytest.approx(1.0), key
        for name in ("a", "b"):
            assert r["per_class"][name][key] == pytest.approx(1.0)
    assert r["num_images"] == 2
    assert r["per_class"]["b"]["num_gts"] == 2 and r["per_class"]["b"]["num_detections"] == 2
    assert r["best_f1"] == {"threshold": 0.9, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    json.dumps(r, allow_nan=False)


def test_false_positive_ranked_above_true_positive():
    gts = [gt([[0, 0, 10, 10]])]
    preds = [pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8])]
    r = evaluate_detection(preds, gts, ["hand"])
    # precision 0 at recall 0, then 1/2 at recall 1: every interpolation gives 0.5
    assert r["ap50"] == pytest.approx(0.5)
    assert r["coco_ap50"] == pytest.approx(0.5)
    assert r["ap50_95"] == pytest.approx(0.5)
    assert r["kitti_ap"] == pytest.approx(0.5)
    assert r["best_f1"]["threshold"] == 0.8
    assert r["best_f1"]["precision"] == pytest.approx(0.5) and r["best_f1"]["recall"] == 1.0


def test_duplicates_are_false_positives():
    gts = [gt([[0, 0, 10, 10]]), gt([[0, 0, 10, 10]])]
    preds = [pred([[0, 0, 10, 10], [0.5, 0, 10, 10]], [0.9, 0.8]), pred([[0, 0, 10, 10]], [0.7])]
    r = evaluate_detection(preds, gts, ["hand"])
    # TP, FP (duplicate), TP: recall .5 .5 1, precision 1 .5 2/3
    assert r["ap50"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    best = r["best_f1"]
    assert best["threshold"] == 0.7 and best["f1"] == pytest.approx(0.8)
    assert best["precision"] == pytest.approx(2 / 3) and best["recall"] == 1.0


def test_iou_threshold_effects():
    gts = [gt([[0, 0, 10, 10]])]
    preds = [pred([[0, 0, 10, 6.2]], [0.9])]  # IoU 0.62
    r = evaluate_detection(preds, gts, ["hand"], iou_threshold=0.5, kitti_iou_threshold=0.7)
    assert r["ap50"] == 1.0
    assert r["kitti_ap"] == 0.0
    assert r["ap50_95"] == pytest.approx(0.3)  # TP at IoU 0.50, 0.55, 0.60 only
    assert evaluate_detection(preds, gts, ["hand"], iou_threshold=0.65)["ap50"] == 0.0
    assert evaluate_detection(preds, gts, ["hand"], kitti_iou_threshold=0.6)["kitti_ap"] == 1.0


def test_empty_predictions_give_zero():
    gts = [gt([[0, 0, 10, 10]]), gt([[5, 5, 30, 30]])]
    preds = [pred(np.zeros((0, 4)), []), pred(np.zeros((0, 4)), [])]
    r = evaluate_detection(preds, gts, ["hand"])
    for key in ("ap50", "ap50_95", "coco_ap50", "kitti_ap"):
        assert r[key] == 0.0
    assert r["best_f1"] == {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert r["per_class"]["hand"]["num_detections"] == 0
    assert r["curves"]["hand"]["precision"] == [0.0] * CURVE_POINTS


def test_images_without_ground_truth_and_classes_without_ground_truth():
    gts = [gt(np.zeros((0, 4))), gt([[0, 0, 10, 10]])]
    preds = [pred([[0, 0, 10, 10]], [0.9]), pred([[0, 0, 10, 10]], [0.8])]
    r = evaluate_detection(preds, gts, ["hand", "fist"])
    assert r["per_class"]["hand"]["ap50"] == pytest.approx(0.5)  # the FP on the empty image ranks first
    fist = r["per_class"]["fist"]
    assert fist["num_gts"] == 0
    assert fist["ap50"] is None and fist["ap50_95"] is None and fist["kitti_ap"] is None
    assert r["ap50"] == pytest.approx(0.5)  # mean over classes with ground truth only
    assert set(r["curves"]) == {"hand"}
    json.dumps(r, allow_nan=False)


def test_no_images():
    r = evaluate_detection([], [], ["hand"])
    assert r["num_images"] == 0 and r["ap50"] == 0.0 and r["per_class"]["hand"]["ap50"] is None


def test_kitti_minimum_size_ignore_rule():
    big, small = [0, 0, 40, 40], [100, 100, 110, 110]
    gts = [gt([big, small, [200, 200, 210, 208]])]  # the last small one is missed
    preds = [
        pred(
            [[300, 300, 305, 305], small, big],  # a small FP, a hit on the small gt, a hit on the big gt
            [0.99, 0.95, 0.9],
        )
    ]
    strict = evaluate_detection(preds, gts, ["hand"], min_width=0, min_height=0)
    ignoring = evaluate_detection(preds, gts, ["hand"], min_width=0, min_height=20)
    assert ignoring["kitti_ap"] == 1.0
    assert ignoring["per_class"]["hand"]["kitti_num_gts"] == 1
    # without the rule: FP, TP, TP with one of 3 gts missed
    assert strict["kitti_ap"] == pytest.approx(sum(2 / 3 for r in range(1, 41) if r / 40 <= 2 / 3) / 40)
    # the minimum size is a KITTI-only rule
    assert ignoring["ap50"] == strict["ap50"]
    assert ignoring["per_class"]["hand"]["num_gts"] == 3


def test_kitti_small_detection_of_counted_ground_truth_is_a_true_positive():
    gts = [gt([[0, 0, 25, 25]])]
    preds = [pred([[0, 0, 25, 18]], [0.9])]  # IoU 0.72, height 18 < 20 <= 25
    assert evaluate_detection(preds, gts, ["hand"], min_height=20)["kitti_ap"] == 1.0


def test_curves_are_sampled_envelopes():
    gts = [gt([[0, 0, 10, 10], [20, 20, 30, 30]])]
    preds = [pred([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0.9, 0.8, 0.7])]
    curve = evaluate_detection(preds, gts, ["hand"])["curves"]["hand"]
    assert len(curve["recall"]) == len(curve["precision"]) == CURVE_POINTS
    precision = np.array(curve["precision"])
    assert np.all(np.diff(precision) <= 0)
    assert precision[0] == 1.0 and precision[50] == 1.0 and precision[51] == pytest.approx(2 / 3)
    assert curve["ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def _reference_coco_ap(gts, preds, num_classes):
    """Plain re-implementation of pycocotools' bbox evaluation (area all, 100 dets, no crowd)."""
    iou_thrs = np.linspace(0.5, 0.95, 10)
    rec_thrs = np.linspace(0.0, 1.0, 101)
    out = []
    for k in range(num_classes):
        per_t = []
        for t in iou_thrs:
            scores, tps, npos = [], [], 0
            for g, p in zip(gts, preds):
                gb = g["boxes"][g["labels"] == k]
                sel = np.flatnonzero(p["labels"] == k)
                sel = sel[np.argsort(-p["scores"][sel], kind="mergesort")][:100]
                npos += len(gb)
                matched = np.zeros(len(gb), bool)
                ious = box_iou(p["boxes"][sel], gb) if len(gb) else np.zeros((len(sel), 0))
                for d in range(len(sel)):
                    best, m = min(t, 1 - 1e-10), -1
                    for j in range(len(gb)):
                        if not matched[j] and ious[d, j] >= best:
                            best, m = ious[d, j], j
                    if m >= 0:
                        matched[m] = True
                    scores.append(p["scores"][sel[d]])
                    tps.append(m >= 0)
            if npos == 0:
                continue
            order = np.argsort(-np.array(scores), kind="mergesort")
            tp = np.cumsum(np.array(tps, bool)[order])
            fp = np.cumsum(~np.array(tps, bool)[order])
            rc, pr = tp / npos, tp / np.maximum(tp + fp, np.spacing(1))
            pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
            q = np.zeros(len(rec_thrs))
            idx = np.searchsorted(rc, rec_thrs, side="left")
            q[idx < len(rc)] = pr[idx[idx < len(rc)]]
            per_t.append(q)
        out.append(float(np.mean(per_t)) if per_t else None)
    return out


def test_coco_ap_matches_reference_on_random_case():
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(12):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(15, 80, (n, 2))
        boxes = np.hstack([xy, xy + wh])
        labels = rng.integers(0, 2, n)
        gts.append({"boxes": boxes, "labels": labels})
        jitter = boxes + rng.normal(0, 4, boxes.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        m = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 200, (m, 2))
        fps = np.hstack([fxy, fxy + rng.uniform(15, 80, (m, 2))])
        pb = np.vstack([jitter, fps])
        plabels = np.concatenate([np.where(rng.random(n) < 0.9, labels, 1 - labels), rng.integers(0, 2, m)])
        preds.append({"boxes": pb, "scores": rng.random(len(pb)), "labels": plabels})
    r = evaluate_detection(preds, gts, ["a", "b"])
    reference = _reference_coco_ap(gts, preds, 2)
    for k, name in enumerate(["a", "b"]):
        assert r["per_class"][name]["ap50_95"] == pytest.approx(reference[k], abs=1e-9)
    assert 0.0 < r["ap50_95"] < r["coco_ap50"] <= 1.0


@pytest.mark.parametrize(
    ("preds", "gts", "message"),
    [
        ([], [gt([[0, 0, 1, 1]])], "0 images of predictions for 1"),
        ([pred([[0, 0, 1, 1]], [0.5], [3])], [gt([[0, 0, 1, 1]])], r"preds\[0\].labels: label 3"),
        ([pred([[0, 0, 1, 1]], [0.5])], [{"boxes": np.zeros((1, 4))}], r"gts\[0\]: missing key 'labels'"),
        ([pred([[0, 0, 1, 1]], [0.5])], [{"boxes": np.zeros((1, 5)), "labels": [0]}], r"gts\[0\].boxes: expected"),
        ([pred([[0, 0, 1, 1]], [0.5, 0.4])], [gt([[0, 0, 1, 1]])], r"preds\[0\].scores: 2 scores for 1"),
    ],
)
def test_bad_input_is_a_one_line_error(preds, gts, message):
    with pytest.raises(GesturekitError, match=message) as info:
        evaluate_detection(preds, gts, ["hand"])
    assert "\n" not in str(info.value)


def test_save_pr_curve_writes_png(tmp_path):
    gts = [gt([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])]
    preds = [pred([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.4], [0, 1])]
    r = evaluate_detection(preds, gts, ["open", "fist"])
    for source, name in ((r, "pr.png"), (r["curves"], "sub/curves.png")):
        out = save_pr_curve(source, tmp_path / name)
        data = out.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["curves.png", "pr.png", "sub"]  # no temp files left


def _boxes_world(n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``n`` images with one ground-truth box each, and detections that find every box exactly."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n):
        x, y = rng.uniform(0, 200, 2)
        box = np.array([[x, y, x + 40, y + 40]], np.float32)
        gts.append({"boxes": box, "labels": np.zeros(1, np.int64)})
        preds.append({"boxes": box.copy(), "scores": np.array([rng.uniform(0.5, 1.0)], np.float32),
                      "labels": np.zeros(1, np.int64)})
    return preds, gts


def test_paired_bootstrap_tells_a_real_gap_from_the_noise_of_a_small_test_set() -> None:
    from gesturekit.metrics.detection import paired_bootstrap_ap50

    preds, gts = _boxes_world(100)
    same = paired_bootstrap_ap50(preds, preds, gts, ["hand"], resamples=200)
    assert same["difference"] == 0.0 and same["interval"] == [0.0, 0.0] and same["within_noise"]
    assert same["a"] == pytest.approx(1.0)
    # b misses every other box (a confident false positive instead): a gap no resample of 100 images hides
    worse = [p if i % 2 else {**p, "boxes": p["boxes"] + 100.0, "scores": np.array([0.99], np.float32)}
             for i, p in enumerate(preds)]
    gap = paired_bootstrap_ap50(preds, worse, gts, ["hand"], resamples=200)
    assert gap["difference"] > 0.4 and gap["interval"][0] > 0.2 and not gap["within_noise"]
    # on 10 images, one miss is within what the sample alone can move
    small_preds, small_gts = _boxes_world(10, seed=1)
    one_miss = [*small_preds[:-1], {**small_preds[-1], "boxes": small_preds[-1]["boxes"] + 100.0}]
    near = paired_bootstrap_ap50(small_preds, one_miss, small_gts, ["hand"], resamples=500)
    assert 0 < near["difference"] < 0.25 and near["within_noise"]
