"""The hand verifier: the shipped detector's candidates rescored from crops, on real HaGRID frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gesturekit.errors import GesturekitError
from gesturekit.runtime.loading import load_classifier, load_detector
from gesturekit.runtime.verifier import HandVerifier

DETECTOR, VERIFIER = "hand-detector-pruned-int8", "hand-verifier"


@pytest.fixture(scope="module")
def hagrid_frames(data_root: Path) -> list[np.ndarray]:
    """Four HaGRID test frames (people in rooms: the detector's false positives live there)."""
    annotations = json.loads((data_root / "hagrid" / "annotations" / "test" / "like.json").read_text())
    names = sorted(annotations)[:4]
    return [np.asarray(Image.open(data_root / "hagrid" / "frames" / f"{n}.jpg").convert("RGB")) for n in names]


def test_verifier_rescores_the_doubtful_candidates_by_their_crops(hagrid_frames) -> None:
    candidates = load_detector(DETECTOR, score_threshold=0.1)
    classifier = load_classifier(VERIFIER)
    verifier = HandVerifier(classifier, candidate_threshold=0.15, trust_threshold=0.6, weight=0.3)
    rescored_count = trusted_count = 0
    for frame in hagrid_frames:
        found = candidates([frame])[0]
        out = verifier(frame, found)
        kept = [d for d in found if d.score >= 0.15]
        assert sorted(d.bbox for d in out) == sorted(d.bbox for d in kept)  # the ones below are dropped
        assert [d.score for d in out] == sorted((d.score for d in out), reverse=True)
        doubtful = [d for d in kept if d.score < 0.6]
        crops = [classifier.crop_region(frame, d.bbox) for d in doubtful]
        p_hand = classifier.probabilities(crops)[:, classifier.classes.index("hand")] if crops else []
        expected = {d.bbox: d.score ** 0.7 * float(p) ** 0.3 for d, p in zip(doubtful, p_hand)}
        expected |= {d.bbox: d.score for d in kept if d.score >= 0.6}  # trusted: no crop, same score
        assert all(d.score == pytest.approx(expected[d.bbox], rel=1e-5) for d in out)
        rescored_count, trusted_count = rescored_count + len(doubtful), trusted_count + len(kept) - len(doubtful)
    assert rescored_count >= 4 and trusted_count >= 1


def test_detector_with_verifier_thresholds_the_new_scores(hagrid_frames) -> None:
    plain = load_detector(DETECTOR, score_threshold=0.1)
    verified = load_detector(DETECTOR, score_threshold=0.3, verifier=VERIFIER, candidate_threshold=0.1)
    verifier = verified.verifier
    assert verifier is not None and verified.postprocessing["score_threshold"] == 0.1
    dropped = 0
    for frame in hagrid_frames:
        expected = [d for d in verifier(frame, plain([frame])[0]) if d.score >= 0.3]
        got = verified([frame])[0]
        assert [(d.bbox, round(d.score, 6)) for d in got] == [(d.bbox, round(d.score, 6)) for d in expected]
        dropped += sum(d.score >= 0.3 for d in plain([frame])[0]) - len(got)
    assert dropped != 0  # the verifier changed which boxes pass 0.3 on these frames


def test_verifier_needs_a_hand_class() -> None:
    with pytest.raises(GesturekitError, match="no 'hand' class"):
        HandVerifier(load_classifier("gesture-classifier-int8"))
    with pytest.raises(GesturekitError, match="weight"):
        HandVerifier(load_classifier(VERIFIER), weight=1.5)
