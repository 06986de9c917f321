"""The hand verifier: the shipped detector's candidates rescored from crops, on real HaGRID frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gesturekit.boxes import box_iou
from gesturekit.data.transforms import frame_scale
from gesturekit.errors import GesturekitError
from gesturekit.runtime.loading import load_classifier, load_detector
from gesturekit.runtime.verifier import HandVerifier, _in_frame

DETECTOR, VERIFIER = "hand-detector-pruned-int8", "hand-verifier"
TRUST = 0.45
"""The trust threshold of these tests (the app's is 0.6): low enough that the frames below hold trusted candidates."""


@pytest.fixture(scope="module")
def hagrid_frames(data_root: Path) -> list[np.ndarray]:
    """Four HaGRID test frames (people in rooms: the detector's false positives live there)."""
    annotations = json.loads((data_root / "hagrid" / "annotations" / "test" / "like.json").read_text())
    names = sorted(annotations)[:4]
    return [np.asarray(Image.open(data_root / "hagrid" / "frames" / f"{n}.jpg").convert("RGB")) for n in names]


def test_verifier_rescores_and_moves_the_doubtful_candidates(hagrid_frames) -> None:
    candidates = load_detector(DETECTOR, score_threshold=0.1)
    classifier = load_classifier(VERIFIER)
    verifier = HandVerifier(classifier, candidate_threshold=0.15, trust_threshold=TRUST, weight=0.3)
    moved = trusted_count = 0
    for frame in hagrid_frames:
        found = candidates([frame])[0]
        out = verifier(frame, found)
        trusted = [d for d in found if d.score >= TRUST]
        doubtful = [d for d in found if 0.15 <= d.score < TRUST]
        assert len(out) == len(trusted) + len(doubtful)  # those under 0.15 are dropped
        assert [d.score for d in out] == sorted((d.score for d in out), reverse=True)
        assert all(d in out for d in trusted)  # trusted: no crop, same box and score
        regions = [classifier.region(frame.shape[:2], d.bbox) for d in doubtful]
        probs, boxes = classifier.outputs([frame[y1:y2, x1:x2] for x1, y1, x2, y2 in regions])
        for d, (x1, y1, x2, y2), p, b in zip(doubtful, regions, probs[:, classifier.classes.index("hand")], boxes):
            w, h = x2 - x1, y2 - y1
            (ax, bx), (ay, by) = sorted((x1 + b[0] * w, x1 + b[2] * w)), sorted((y1 + b[1] * h, y1 + b[3] * h))
            expected_box = (ax, ay, bx, by)  # corners in order, even where the head swaps them (background)
            (got,) = [o for o in out if o.score == pytest.approx(d.score ** 0.7 * float(p) ** 0.3, rel=1e-6)]
            clipped = np.clip(expected_box, 0, [frame.shape[1], frame.shape[0]] * 2)
            assert np.allclose(got.bbox, clipped, atol=1e-3)
            moved += not np.allclose(got.bbox, d.bbox, atol=1.0)
        trusted_count += len(trusted)
    assert moved >= 4 and trusted_count >= 1


@pytest.mark.parametrize("refine_boxes", ["all", "none"])
def test_refine_boxes_picks_the_boxes_the_head_moves(hagrid_frames, refine_boxes: str) -> None:
    candidates = load_detector(DETECTOR, score_threshold=0.1)
    classifier = load_classifier(VERIFIER)
    doubtful_only = HandVerifier(classifier, candidate_threshold=0.1, trust_threshold=TRUST)
    verifier = HandVerifier(classifier, candidate_threshold=0.1, trust_threshold=TRUST, refine_boxes=refine_boxes)
    trusted_seen = 0
    for frame in hagrid_frames:
        found = candidates([frame])[0]
        out, reference = verifier(frame, found), doubtful_only(frame, found)
        assert [d.score for d in out] == [d.score for d in reference]  # the same rescoring either way
        trusted = [d for d in found if d.score >= TRUST]
        trusted_seen += len(trusted)
        for d in trusted:
            (same,) = [o for o in out if o.score == d.score]  # a trusted candidate keeps its score...
            if refine_boxes == "all":  # ...and is moved to the box regressed from its own crop
                region = classifier.region(frame.shape[:2], d.bbox)
                box = classifier.outputs([frame[region[1]:region[3], region[0]:region[2]]])[1][0]
                assert np.allclose(same.bbox, _in_frame(region, box, frame.shape[:2]), atol=1e-3)
                assert not np.allclose(same.bbox, d.bbox, atol=1.0)
            else:
                assert same.bbox == d.bbox
        if refine_boxes == "none":  # every box as the detector drew it
            assert {d.bbox for d in out} <= {d.bbox for d in found}
    assert trusted_seen >= 1


def test_refine_small_moves_every_box_its_crop_shows_sharper(hagrid_frames, data_root: Path) -> None:
    egohands = [np.asarray(Image.open(p).convert("RGB"))  # large hands, seen at 0.83x by the detector
                for p in sorted((data_root / "egohands" / "images").glob("CARDS_OFFICE_S_B_*.jpg"))[:4]]
    detector = load_detector("hand-detector", score_threshold=0.1)
    classifier = load_classifier(VERIFIER)
    doubtful = HandVerifier(classifier, candidate_threshold=0.1, trust_threshold=0.6)
    small = HandVerifier(classifier, candidate_threshold=0.1, trust_threshold=0.6, refine_boxes="small")
    everything = HandVerifier(classifier, candidate_threshold=0.1, trust_threshold=0.6, refine_boxes="all")
    kept = moved = trusted_moved = trusted_kept = 0
    for frame in hagrid_frames + egohands:
        scale = frame_scale(*frame.shape[:2], detector.input_size)  # the detector's input scale
        found = detector([frame])[0]
        for d in found:  # one at a time, doubtful and trusted
            (got,), (ref,), (refined,) = small(frame, [d], scale), doubtful(frame, [d]), everything(frame, [d])
            assert got.score == ref.score  # the same rescoring; a trusted candidate keeps its score
            x1, y1, x2, y2 = classifier.region(frame.shape[:2], d.bbox)
            sharper = classifier.input_size / max(x2 - x1, y2 - y1) > scale
            assert got.bbox == (refined.bbox if sharper else d.bbox)
            if d.score < 0.6:
                moved, kept = moved + sharper, kept + (not sharper)
            else:
                trusted_moved, trusted_kept = trusted_moved + sharper, trusted_kept + (not sharper)
    assert moved >= 2 and kept >= 2 and trusted_moved >= 1 and trusted_kept >= 1
    with pytest.raises(GesturekitError, match="input_scale"):
        small(hagrid_frames[0], found)


def test_detector_with_verifier_thresholds_the_new_scores(hagrid_frames) -> None:
    plain = load_detector(DETECTOR, score_threshold=0.1)
    verified = load_detector(DETECTOR, score_threshold=0.3, verifier=VERIFIER, candidate_threshold=0.1)
    verifier = verified.verifier
    assert verifier is not None and verified.postprocessing["score_threshold"] == 0.1
    crossed = 0
    for frame in hagrid_frames:
        expected = [d for d in verifier(frame, plain([frame])[0]) if d.score >= 0.3]
        got = verified([frame])[0]
        assert {(d.bbox, round(d.score, 6)) for d in got} <= {(d.bbox, round(d.score, 6)) for d in expected}
        boxes = np.array([d.bbox for d in got]).reshape(-1, 4)
        overlap = box_iou(boxes, boxes)[~np.eye(len(boxes), dtype=bool)]
        assert (overlap < verified.postprocessing["nms_iou_threshold"]).all()  # moved boxes merged again
        rescored = [(d, verifier(frame, [d])) for d in plain([frame])[0]]  # one candidate at a time
        crossed += sum((d.score >= 0.3) != (new.score >= 0.3) for d, (new,) in rescored)
    assert crossed != 0  # the verifier changed which boxes pass 0.3 on these frames


def test_verifier_weight_reaches_the_rescoring(hagrid_frames) -> None:
    plain = load_detector(DETECTOR, score_threshold=0.1)
    heavy = load_detector(DETECTOR, score_threshold=0.0, verifier=VERIFIER, verifier_weight=0.6)
    assert heavy.verifier is not None and heavy.verifier.weight == 0.6
    light = HandVerifier(load_classifier(VERIFIER), weight=0.3)
    changed = 0
    for frame in hagrid_frames:
        found = plain([frame])[0]
        expected = HandVerifier(heavy.verifier.classifier, weight=0.6)(frame, found)
        got = heavy([frame])[0]
        assert {(d.bbox, round(d.score, 6)) for d in got} <= {(d.bbox, round(d.score, 6)) for d in expected}
        changed += len({round(d.score, 6) for d in expected} - {round(d.score, 6) for d in light(frame, found)})
    assert changed >= 1  # the doubtful candidates' scores follow the weight


def test_evaluate_detector_passes_the_verifier_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gesturekit.cli.main import app
    from gesturekit.evaluation import detection
    from gesturekit.runtime import loading

    calls: list[dict] = []
    monkeypatch.setattr(loading, "load_detector", lambda name, backend, **kwargs: calls.append(kwargs) or name)
    monkeypatch.setattr(detection, "evaluate_detector_on", lambda *args, **kwargs: {})
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"dataset: {{train: [{tmp_path}]}}\n")
    result = CliRunner().invoke(app, ["evaluate", "detector", "-e", str(spec), "-m", "hand-detector", "--verifier",
                                      VERIFIER, "--verifier-weight", "0.6", "--candidate-threshold", "0.2"])
    assert result.exit_code == 0, result.output
    assert calls == [{"score_threshold": 0.0, "verifier": VERIFIER, "candidate_threshold": 0.2,
                      "verifier_weight": 0.6, "refine_boxes": "doubtful"}]


def test_verifier_needs_a_hand_class() -> None:
    with pytest.raises(GesturekitError, match="no 'hand' class"):
        HandVerifier(load_classifier("gesture-classifier-int8"))
    with pytest.raises(GesturekitError, match="weight"):
        HandVerifier(load_classifier(VERIFIER), weight=1.5)
    with pytest.raises(GesturekitError, match="refine_boxes: must be one of"):
        HandVerifier(load_classifier(VERIFIER), refine_boxes="most")  # type: ignore[arg-type]
