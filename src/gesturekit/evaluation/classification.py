"""Evaluate a gesture classifier on crops cut the way the cascade cuts them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from gesturekit.data.formats.kitti import read_kitti_dataset
from gesturekit.data.pack import open_pack
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES, read_rgb
from gesturekit.io import atomic_write_json
from gesturekit.metrics.classification import evaluate_classification
from gesturekit.metrics.plots import save_confusion_matrix
from gesturekit.runtime.classifier import GestureClassifier



def labelled_crops(source: Path, split: str, classifier: GestureClassifier) -> Iterator[tuple[np.ndarray, str]]:
    """Yield ``(crop, label)``: whole images of class folders, or boxes of KITTI frames / packs
    cut with the classifier's crop convention."""
    if source.suffix == ".gkpack":
        pack = open_pack(source)
        for record in pack.records(split):
            frame = pack.image(record.index).permute(1, 2, 0).numpy()
            yield classifier.crop_region(frame, record.boxes[0]), record.label
    elif (source / "labels").is_dir():
        for ann in read_kitti_dataset(source, split):
            frame = read_rgb(ann.image)
            for box in ann.boxes:
                yield classifier.crop_region(frame, (box.x1, box.y1, box.x2, box.y2)), box.label
    elif source.is_dir():
        root = source / split if (source / split).is_dir() else source
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield read_rgb(path), folder.name
    else:
        raise GesturekitError(f"{source}: not a class-folder root, a KITTI directory or a .gkpack")


def classify_source(classifier: GestureClassifier, source: Path, split: str,
                    class_map: Mapping[str, str] | None = None) -> tuple[list[int], list[int]]:
    """The true and the predicted class index of every crop of ``source``'s ``split``."""
    classes, class_map = classifier.classes, class_map or {}
    crops, y_true = [], []
    for crop, label in track(labelled_crops(source, split, classifier), description=f"{source.name}/{split}",
                             transient=True):
        name = class_map.get(label, label)
        if name not in classes:
            raise GesturekitError(f"{source}: class {label!r} is not one of {classes}; give a class map")
        crops.append(crop)
        y_true.append(classes.index(name))
    if not crops:
        raise GesturekitError(f"{source}: no crops in split {split!r}")
    return y_true, [int(p.argmax()) for p in classifier.probabilities(crops)]


def evaluate_classifier_on(classifier: GestureClassifier, datasets: Sequence[Path], split: str,
                           class_map: Mapping[str, str] | None = None, out_dir: Path | None = None) -> dict[str, Any]:
    """Per-class P/R/F1, macro-F1 and the confusion matrix of each dataset (JSON + PNG in ``out_dir``)."""
    classes = classifier.classes
    results: dict[str, Any] = {}
    for source in map(Path, datasets):
        y_true, y_pred = classify_source(classifier, source, split, class_map)
        result = evaluate_classification(y_true, y_pred, classes)
        name = f"{source.stem}_{split}"
        if out_dir is not None:
            atomic_write_json(out_dir / f"{name}.json", result)
            save_confusion_matrix(np.array(result["confusion_matrix"]), classes, out_dir / f"{name}_confusion.png",
                                  title=f"{name} confusion")
        results[name] = result
    return results
