"""Train/val splits: random, by group (EgoHands video, HaGRID user), or the source's own."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

from gesturekit.data.records import ImageAnnotation
from gesturekit.errors import GesturekitError

SplitMethod = Literal["random", "group", "keep"]
POOLED_SPLITS = ("train", "val")


def _check_fraction(val_fraction: float) -> None:
    if not 0 <= val_fraction < 1:
        raise GesturekitError(f"--val-fraction {val_fraction}: must be in [0, 1)")


def _sorted(annotations: Sequence[ImageAnnotation]) -> list[ImageAnnotation]:
    return sorted(annotations, key=lambda a: str(a.image))


def random_split(
    annotations: Sequence[ImageAnnotation], val_fraction: float, seed: int
) -> tuple[list[ImageAnnotation], list[ImageAnnotation]]:
    """Shuffle the images (in a seed-determined order) and cut off ``val_fraction`` of them.

    With ``val_fraction > 0`` and at least two images, both sides get at least one image.

    Returns:
        ``(train, val)``.
    """
    _check_fraction(val_fraction)
    items = _sorted(annotations)
    random.Random(seed).shuffle(items)
    n_val = round(val_fraction * len(items))
    if val_fraction > 0 and len(items) >= 2:
        n_val = min(max(n_val, 1), len(items) - 1)
    return _sorted(items[n_val:]), _sorted(items[:n_val])


def group_split(
    annotations: Sequence[ImageAnnotation], val_fraction: float, seed: int
) -> tuple[list[ImageAnnotation], list[ImageAnnotation]]:
    """Split whole groups so that no group has images on both sides.

    Groups are visited in a seed-determined order and each one joins val when that brings the
    val image count closer to ``val_fraction`` of all images. An image without a group is a
    group of its own. With ``val_fraction > 0`` and at least two groups, both sides get one.

    Returns:
        ``(train, val)``.

    Raises:
        GesturekitError: no image carries a group.
    """
    _check_fraction(val_fraction)
    if annotations and all(a.group is None for a in annotations):
        raise GesturekitError("--split group: the source has no groups (videos, users); use --split random")
    groups: dict[str, list[ImageAnnotation]] = defaultdict(list)
    for ann in _sorted(annotations):
        groups[ann.group if ann.group is not None else f"\0{ann.image}"].append(ann)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    target = val_fraction * len(annotations)
    val_keys: list[str] = []
    n_val = 0
    for key in order:
        size = len(groups[key])
        if abs(n_val + size - target) < abs(n_val - target):
            val_keys.append(key)
            n_val += size
    if val_fraction > 0 and len(order) >= 2:
        if not val_keys:
            val_keys = [min(order, key=lambda k: len(groups[k]))]
        elif len(val_keys) == len(order):
            val_keys.remove(max(val_keys, key=lambda k: len(groups[k])))
    chosen = set(val_keys)
    train = [a for k in order if k not in chosen for a in groups[k]]
    val = [a for k in order if k in chosen for a in groups[k]]
    return _sorted(train), _sorted(val)


def resplit(
    splits: Mapping[str, Sequence[ImageAnnotation]],
    method: SplitMethod,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, list[ImageAnnotation]]:
    """Make the output splits from a source's splits.

    ``keep`` returns the source's splits. ``random`` and ``group`` pool the source's ``train``
    and ``val`` splits (every split when it has neither), cut the pool into new ``train`` and
    ``val``, and keep any other split (e.g. ``test``) unchanged.
    """
    if method == "keep":
        return {name: list(anns) for name, anns in splits.items()}
    if method not in ("random", "group"):
        raise GesturekitError(f"--split {method!r}: expected random, group or keep")
    pooled = [s for s in splits if s in POOLED_SPLITS] or list(splits)
    pool = [a for s in pooled for a in splits[s]]
    if not pool:
        raise GesturekitError("the source has no images to split")
    train, val = (random_split if method == "random" else group_split)(pool, val_fraction, seed)
    others = {name: list(anns) for name, anns in splits.items() if name not in pooled}
    return {"train": train, "val": val, **others}
