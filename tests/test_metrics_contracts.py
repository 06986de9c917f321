"""Metric contracts: IoU exactly at each threshold, KITTI's minimum size at equality, perfect / empty / shuffled
predictions on random scenes, and small cases worked by hand (the expected figures are in the comments)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesturekit.boxes import box_iou
from gesturekit.metrics.classification import evaluate_classification
from gesturekit.metrics.detection import evaluate_detection

GT = [0.0, 0.0, 10.0, 10.0]  # area 100: a box (0, 0, 10, h) inside it has IoU h / 10


def gts(*images):
    return [{"boxes": np.array(b, float).reshape(-1, 4), "labels": np.zeros(len(b), int)} for b in images]


def preds(*images):
    """Each image: a list of ``(box, score)``."""
    return [{"boxes": np.array([d[0] for d in im], float).reshape(-1, 4), "scores": np.array([d[1] for d in im]),
             "labels": np.zeros(len(im), int)} for im in images]


def test_box_iou_hand_worked() -> None:
    a = np.array([[0, 0, 2, 2]], float)
    b = np.array([[1, 1, 3, 3], [2, 0, 4, 2], [0, 0, 1, 1], [0, 0, 2, 2], [3, 3, 3, 5]], float)
    # overlap 1 of union 7; touching edge; contained quarter; itself; a zero-area box
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 0.0, 0.25, 1.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5) and box_iou(a, np.zeros((0, 4))).shape == (1, 0)


BOXES = st.tuples(st.floats(-100, 100), st.floats(-100, 100), st.floats(0.01, 100), st.floats(0.01, 100)).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])


@settings(max_examples=200, deadline=None)
@given(BOXES, BOXES, st.floats(-50, 50), st.floats(0.1, 10))
def test_box_iou_is_symmetric_bounded_and_invariant_to_translation_and_scale(p, q, shift, scale) -> None:
    a, b = np.array([p]), np.array([q])
    iou = box_iou(a, b)[0, 0]
    assert 0.0 <= iou <= 1.0 and iou == pytest.approx(box_iou(b, a)[0, 0], abs=1e-12)
    assert box_iou((a + shift) * scale, (b + shift) * scale)[0, 0] == pytest.approx(iou, abs=1e-6)
    assert box_iou(a, a)[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("height,voc_tp", [(5.0, True), (4.99, False)])
def test_iou_exactly_at_the_voc_and_coco_threshold_is_a_match(height: float, voc_tp: bool) -> None:
    """IoU 0.5 exactly matches at 0.5 (VOC: ``IoU >= 0.5``; COCO: the 0.50 threshold only, so AP@0.5:0.95 is
    1 of 10 thresholds); IoU 0.499 matches nowhere."""
    r = evaluate_detection(preds([([0, 0, 10, height], 0.9)]), gts([GT]), ["hand"])
    assert r["ap50"] == (1.0 if voc_tp else 0.0)
    assert r["coco_ap50"] == pytest.approx(1.0 if voc_tp else 0.0)
    assert r["ap50_95"] == pytest.approx(0.1 if voc_tp else 0.0)


@pytest.mark.parametrize("height,kitti_tp", [(7.0, True), (6.99, False)])
def test_iou_exactly_at_the_kitti_threshold_is_a_match(height: float, kitti_tp: bool) -> None:
    r = evaluate_detection(preds([([0, 0, 10, height], 0.9)]), gts([GT]), ["hand"], kitti_iou_threshold=0.7)
    assert r["kitti_ap"] == (1.0 if kitti_tp else 0.0)
    assert r["ap50"] == 1.0  # IoU 0.7 / 0.699 clears VOC's 0.5 either way
    # COCO thresholds 0.50 .. 0.70 (5 of 10) at IoU 0.7; 0.50 .. 0.65 (4) at 0.699
    assert r["ap50_95"] == pytest.approx(0.5 if kitti_tp else 0.4)


@pytest.mark.parametrize("size,counted", [(4.0, True), (3.99, False)])
def test_kitti_minimum_size_at_equality(size: float, counted: bool) -> None:
    """A ground truth exactly ``min_height`` (or ``min_width``) tall counts; a hair smaller is ignored: missing it
    costs nothing and a detection on it is no false positive."""
    tall = [50, 50, 50 + size, 60]  # width ``size``
    wide = [100, 100, 110, 100 + size]  # height ``size``
    for box, kwargs in ((tall, {"min_width": 4.0}), (wide, {"min_height": 4.0})):
        missed = evaluate_detection(preds([(GT, 0.9)]), gts([GT, box]), ["hand"], **kwargs)
        assert missed["per_class"]["hand"]["kitti_num_gts"] == (2 if counted else 1)
        # counted and missed: precision 1 up to recall 1/2, then nothing: 20 of the 40 recall points
        assert missed["kitti_ap"] == pytest.approx(0.5 if counted else 1.0)
        found = evaluate_detection(preds([(box, 0.95), (GT, 0.9)]), gts([GT, box]), ["hand"], **kwargs)
        assert found["kitti_ap"] == 1.0
        assert missed["per_class"]["hand"]["num_gts"] == 2  # the size rule is KITTI's alone


def test_hand_worked_ranking() -> None:
    """Two hands, three detections. TP 0.9, FP 0.8, TP 0.7: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; the
    envelope gives 1 up to recall 1/2 and 2/3 to 1: AP = 1/2 + 1/3 = 5/6. FP first: 2/3 all the way: AP 2/3."""
    truth = gts([GT, [20, 20, 30, 30]])
    ranked = evaluate_detection(preds([(GT, 0.9), ([50, 50, 60, 60], 0.8), ([20, 20, 30, 30], 0.7)]), truth, ["h"])
    assert ranked["ap50"] == pytest.approx(5 / 6)
    # KITTI: 40 recall points; 1.0 at the 20 up to 1/2, 2/3 at the 20 above
    assert ranked["kitti_ap"] == pytest.approx((20 * 1 + 20 * 2 / 3) / 40)
    assert ranked["best_f1"] == pytest.approx({"threshold": 0.7, "precision": 2 / 3, "recall": 1.0, "f1": 0.8})
    fp_first = evaluate_detection(preds([(GT, 0.8), ([50, 50, 60, 60], 0.9), ([20, 20, 30, 30], 0.7)]), truth,
                                  ["h"])
    assert fp_first["ap50"] == pytest.approx(2 / 3)


def test_a_second_detection_of_a_matched_hand_is_a_false_positive() -> None:
    """Duplicate at 0.8 on the first hand, second hand found at 0.7: precision 1, 1/2, 2/3 -> AP 5/6."""
    truth = gts([GT, [20, 20, 30, 30]])
    r = evaluate_detection(preds([(GT, 0.9), ([0, 0, 10, 9], 0.8), ([20, 20, 30, 30], 0.7)]), truth, ["h"])
    assert r["ap50"] == pytest.approx(5 / 6)


@st.composite
def scenes(draw: st.DrawFn) -> list[list[list[float]]]:
    """2-5 images; image i's 0-4 boxes lie in columns of x from 1000 * i, so no box of one image overlaps a
    box of another image placed on it, and boxes of an image do not overlap each other."""
    images = []
    for i in range(draw(st.integers(2, 5))):
        boxes = []
        for j in range(draw(st.integers(0, 4))):
            x1 = 1000 * i + 200 * j + draw(st.floats(0, 50))
            y1 = draw(st.floats(0, 500))
            boxes.append([x1, y1, x1 + draw(st.floats(8, 150)), y1 + draw(st.floats(8, 300))])
        images.append(boxes)
    return images


def scored(images: list[list[list[float]]], scores: list[float]) -> list:
    it = iter(scores)
    return preds(*[[(box, next(it)) for box in boxes] for boxes in images])


@settings(max_examples=60, deadline=None)
@given(scenes(), st.data())
def test_perfect_empty_and_shuffled_predictions(images, data) -> None:
    n = sum(map(len, images))
    truth = gts(*images)
    scores = data.draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n))
    perfect = evaluate_detection(scored(images, scores), truth, ["hand"], min_width=4, min_height=4)
    empty = evaluate_detection(preds(*[[] for _ in images]), truth, ["hand"])
    moved = images[1:] + images[:1]  # every image gets the next image's boxes
    shuffled = evaluate_detection(scored(moved, scores), truth, ["hand"])
    keys = ("ap50", "ap50_95", "coco_ap50", "kitti_ap")
    if n == 0:  # no ground truth anywhere: every AP undefined, its mean 0
        assert all(perfect[k] == 0.0 and perfect["per_class"]["hand"][k] is None for k in keys)
        return
    for key in keys:
        assert perfect[key] == pytest.approx(1.0), key
        assert empty[key] == 0.0 and shuffled[key] == 0.0, key
    assert perfect["best_f1"]["f1"] == pytest.approx(1.0) and perfect["best_f1"]["threshold"] == min(scores)
    assert perfect["per_class"]["hand"]["num_gts"] == n == shuffled["per_class"]["hand"]["num_detections"]


@settings(max_examples=40, deadline=None)
@given(scenes(), st.data())
def test_a_false_positive_ranked_last_costs_nothing_and_first_costs_ap(images, data) -> None:
    """All-point VOC AP: a false positive below every true one leaves AP as it was; above them, it lowers it."""
    n = sum(map(len, images))
    if n == 0:
        return
    scores = data.draw(st.lists(st.floats(0.1, 0.9), min_size=n, max_size=n))
    far = [5000.0, 5000.0, 5010.0, 5010.0]  # on no hand
    base = scored(images, scores)
    low = scored([images[0] + [far], *images[1:]], [*scores[:len(images[0])], 0.05, *scores[len(images[0]):]])
    high = scored([images[0] + [far], *images[1:]], [*scores[:len(images[0])], 0.95, *scores[len(images[0]):]])
    truth = gts(*images)
    ap = evaluate_detection(base, truth, ["hand"])["ap50"]
    assert evaluate_detection(low, truth, ["hand"])["ap50"] == pytest.approx(ap)
    assert evaluate_detection(high, truth, ["hand"])["ap50"] < ap - 1e-9


def test_classification_hand_worked() -> None:
    """true a a a b b c, predicted a a b b c c: a P 2/2 R 2/3; b P 1/2 R 1/2; c P 1/2 R 1/1."""
    r = evaluate_classification([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    f1 = {"a": 2 * 1 * (2 / 3) / (1 + 2 / 3), "b": 0.5, "c": 2 * 0.5 / 1.5}
    for name, (p, rec) in {"a": (1, 2 / 3), "b": (0.5, 0.5), "c": (0.5, 1.0)}.items():
        stats = r["per_class"][name]
        assert (stats["precision"], stats["recall"], stats["f1"]) == pytest.approx((p, rec, f1[name]))
    assert r["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60))))
def test_classification_counts_like_a_tally(case) -> None:
    """Recall of a class = correct / its samples, precision = correct / its predictions (counted here), perfect
    predictions score 1, and the order of the samples does not matter."""
    k, pairs = case
    true, pred = [t for t, _ in pairs], [p for _, p in pairs]
    classes = [f"c{i}" for i in range(k)]
    r = evaluate_classification(true, pred, classes)
    for i, name in enumerate(classes):
        support = sum(t == i for t in true)
        predicted = sum(p == i for p in pred)
        correct = sum(t == p == i for t, p in pairs)
        assert r["per_class"][name]["recall"] == pytest.approx(correct / support if support else 0.0)
        assert r["per_class"][name]["precision"] == pytest.approx(correct / predicted if predicted else 0.0)
    assert r["accuracy"] == pytest.approx(sum(t == p for t, p in pairs) / len(pairs))
    assert evaluate_classification(true[::-1], pred[::-1], classes) == r
    perfect = evaluate_classification(true, true, classes)
    assert perfect["accuracy"] == perfect["macro_f1"] == 1.0
