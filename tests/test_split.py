from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesturekit.data.formats.egohands import read_egohands_csv
from gesturekit.data.formats.hagrid import read_hagrid
from gesturekit.data.records import ImageAnnotation
from gesturekit.data.split import group_split, random_split, resplit
from gesturekit.errors import GesturekitError


def _anns(groups: list[str | None]) -> list[ImageAnnotation]:
    return [ImageAnnotation(Path(f"img{i:03d}.jpg"), 10, 10, [], g) for i, g in enumerate(groups)]


def _groups(anns: list[ImageAnnotation]) -> set[str | None]:
    return {a.group for a in anns}


def test_random_split_is_seeded_complete_and_sized():
    anns = _anns([None] * 50)
    train, val = random_split(anns, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert sorted(a.image for a in train + val) == [a.image for a in anns]
    assert random_split(list(reversed(anns)), 0.2, seed=3) == (train, val)
    assert random_split(anns, 0.2, seed=4) != (train, val)
    assert len(random_split(anns[:3], 0.01, 0)[1]) == 1  # a positive fraction gives val an image
    assert random_split(anns, 0.0, 0) == (anns, [])


@settings(max_examples=100, deadline=None)
@given(
    groups=st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), min_size=1, max_size=40),
    fraction=st.floats(0, 0.9),
    seed=st.integers(0, 1000),
)
def test_group_split_never_puts_a_group_on_both_sides(groups, fraction, seed):
    anns = _anns(groups)
    if all(g is None for g in groups):
        with pytest.raises(GesturekitError, match="has no groups"):
            group_split(anns, fraction, seed)
        return
    train, val = group_split(anns, fraction, seed)
    assert sorted(a.image for a in train + val) == [a.image for a in anns]
    assert not (_groups(train) - {None}) & (_groups(val) - {None})
    distinct = len(set(a.group if a.group is not None else a.image for a in anns))
    if fraction > 0 and distinct >= 2:
        assert train and val


def test_group_split_on_real_data_is_disjoint(data_root: Path):
    ego = read_egohands_csv(data_root / "egohands")
    hagrid = [a for v in read_hagrid(data_root / "hagrid").values() for a in v]
    for anns in (ego["train"] + ego["test"], hagrid):
        train, val = group_split(anns, 0.2, seed=0)
        assert train and val and len(train) + len(val) == len(anns)
        assert not _groups(train) & _groups(val)
    split = resplit(ego, "group", 0.1, seed=1)
    assert list(split) == ["train", "val", "test"] and split["test"] == ego["test"]
    assert not _groups(split["train"]) & _groups(split["val"])
    assert len(_groups(split["val"])) == 1  # 4 videos: the nearest to 10% is one whole video


def test_resplit_pools_train_and_val_and_keeps_the_rest():
    splits = {"train": _anns(["a"] * 8), "val": _anns(["b"] * 2), "test": _anns(["c"] * 3)}
    out = resplit(splits, "random", 0.5, seed=0)
    assert [len(out[k]) for k in ("train", "val", "test")] == [5, 5, 3]
    assert resplit(splits, "keep") == splits
    hagrid_like = {"test": _anns(["a", "b"]), "val": _anns(["c"])}  # a "val" is pooled, so "test" is kept
    assert len(resplit(hagrid_like, "random", 0.5, 0)["test"]) == 2
    no_pool = {"all": _anns(["a", "b", "c", "d"])}
    out = resplit(no_pool, "group", 0.5, 0)
    assert set(out) == {"train", "val"} and len(out["val"]) == 2
    with pytest.raises(GesturekitError, match="no images to split"):
        resplit({"train": []}, "random")
    with pytest.raises(GesturekitError, match=r"--val-fraction 1.5: must be in \[0, 1\)"):
        resplit(no_pool, "random", 1.5)
