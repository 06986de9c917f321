import json

import numpy as np
import pytest

from gesturekit.errors import GesturekitError
from gesturekit.metrics.classification import evaluate_classification
from gesturekit.metrics.plots import save_confusion_matrix

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["fist", "open", "point", "ok"]
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_hand_computed_metrics():
    r = evaluate_classification(Y_TRUE, Y_PRED, CLASSES)
    assert r["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["num_samples"] == 6
    fist, open_, point, ok = (r["per_class"][c] for c in CLASSES)
    assert (fist["precision"], fist["recall"], fist["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert (open_["precision"], open_["recall"], open_["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (point["precision"], point["recall"], point["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert (fist["support"], open_["support"], point["support"]) == (3, 2, 1)
    assert (fist["predicted"], open_["predicted"], point["predicted"]) == (2, 2, 2)
    # "ok" never occurs: zero everywhere and left out of the macro averages
    assert ok == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["macro_precision"] == pytest.approx(2 / 3)
    assert r["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    json.dumps(r, allow_nan=False)


def test_class_only_predicted_counts_in_macro():
    r = evaluate_classification([0, 0], [0, 1], ["a", "b"])
    assert r["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 1}
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_empty_and_numpy_inputs():
    r = evaluate_classification([], [], ["a", "b"])
    assert r["accuracy"] == 0.0 and r["macro_f1"] == 0.0
    assert r["confusion_matrix"] == [[0, 0], [0, 0]]
    r = evaluate_classification(np.array([1, 1]), np.array([1, 1]), ["a", "b"])
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1], [0], "y_pred: 1 predictions for 2 true labels"),
        ([0, 4], [0, 1], "y_true: label 4 is not a class index in 0..3"),
        ([0, 1], [0, -1], "y_pred: label -1"),
        ([0, 1], [0, 1.5], "y_pred: label 1.5"),
    ],
)
def test_bad_labels(y_true, y_pred, message):
    with pytest.raises(GesturekitError, match=message):
        evaluate_classification(y_true, y_pred, CLASSES)


@pytest.mark.parametrize("normalize", [True, False])
def test_save_confusion_matrix_writes_png(tmp_path, normalize):
    cm = evaluate_classification(Y_TRUE, Y_PRED, CLASSES)["confusion_matrix"]
    out = save_confusion_matrix(cm, CLASSES, tmp_path / "cm.png", normalize=normalize)
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_save_confusion_matrix_checks_shape(tmp_path):
    with pytest.raises(GesturekitError, match=r"cm: expected shape \[4, 4\]"):
        save_confusion_matrix([[1, 0], [0, 1]], CLASSES, tmp_path / "cm.png")
    with pytest.raises(GesturekitError, match="format 'xyz'"):
        save_confusion_matrix(np.eye(4, dtype=int), CLASSES, tmp_path / "cm.xyz")
    assert not list(tmp_path.iterdir())


def test_paired_bootstrap_of_macro_f1_separates_a_real_gap_from_sampling_noise() -> None:
    from gesturekit.metrics.classification import paired_bootstrap_macro_f1

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    right = truth.copy()
    wrong_third = np.where(np.arange(300) % 3 == 0, (truth + 1) % 3, truth)
    gap = paired_bootstrap_macro_f1(truth, right, wrong_third, ["a", "b", "c"], resamples=200)
    assert gap["a"] == 1.0 and gap["difference"] > 0.25 and gap["interval"][0] > 0.2 and not gap["within_noise"]
    one_off = right.copy()
    one_off[0] = (truth[0] + 1) % 3
    near = paired_bootstrap_macro_f1(truth, right, one_off, ["a", "b", "c"], resamples=200)
    assert 0 < near["difference"] < 0.01 and near["within_noise"]
