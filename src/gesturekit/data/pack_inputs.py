"""What ``gesturekit data pack`` packs: the annotated frames or hand crops of its sources, by format.

Shared by the ``data pack`` command and the workflow's ``pack`` stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gesturekit.data.classmap import ClassMap
from gesturekit.data.convert import read_source
from gesturekit.data.records import ImageAnnotation
from gesturekit.errors import GesturekitError

if TYPE_CHECKING:
    from gesturekit.data.pack import CropSource, PackSummary

FOLDERS = "folders"
PackKind = Literal["detection", "classification"]


def source_format(src: Path, fmt: str) -> str:
    """The format of ``src``: ``kitti`` when it has ``images/``, else ``folders`` (class folders)."""
    if not src.exists():
        raise GesturekitError(f"{src}: not found")
    if fmt != "auto":
        return fmt
    return "kitti" if (src / "images").is_dir() else FOLDERS


def read_splits(src: Path, fmt: str, wanted: list[str] | None) -> dict[str, list[ImageAnnotation]]:
    """The splits of ``src`` (all, or the ``wanted`` ones, each of which must exist)."""
    splits = read_source(fmt, src).splits
    if wanted is None:
        return splits
    missing = [s for s in wanted if s not in splits]
    if missing:
        raise GesturekitError(f"{src}: no split {missing[0]!r} (splits: {', '.join(splits) or 'none'})")
    return {s: splits[s] for s in wanted}


def detection_annotations(
    sources: list[Path], fmt: str, wanted: list[str] | None, cmap: ClassMap | None
) -> dict[str, list[ImageAnnotation]]:
    """Every selected split of every source, merged by split name, labels renamed by ``cmap``."""
    merged: dict[str, list[ImageAnnotation]] = {}
    for src in sources:
        src_fmt = source_format(src, fmt)
        if src_fmt == FOLDERS:
            raise GesturekitError(
                f"{src}: class folders have no boxes; use --kind classification or a dataset with labels"
            )
        for split, anns in read_splits(src, src_fmt, wanted).items():
            merged.setdefault(split, []).extend(cmap.apply(anns) if cmap else anns)
    if not any(merged.values()):
        raise GesturekitError("nothing to pack: no images in the selected splits")
    return merged


def crop_sources(
    sources: list[Path],
    fmt: str,
    wanted: list[str] | None,
    cmap: ClassMap | None,
    holdout: float,
    max_per_class: int | None,
    seed: int,
    folders: list[str] | None = None,
) -> list[CropSource]:
    """One hand crop per box of the frame sources, and the (held-out, capped) images of class folders
    (the named ``folders`` only, if given)."""
    from gesturekit.data.pack import class_folder_sources, frame_sources

    crops: list[CropSource] = []
    for src in sources:
        src_fmt = source_format(src, fmt)
        if src_fmt == FOLDERS:
            found = class_folder_sources(src, cmap, holdout, max_per_class, seed, folders)
            crops += [c for c in found if wanted is None or c.split in wanted]
        elif folders is not None:
            raise GesturekitError(f"{src}: folders selects class folders, and this source is {src_fmt}")
        else:
            crops += frame_sources(read_splits(src, src_fmt, wanted), cmap)
    if not crops:
        raise GesturekitError("nothing to pack: no images in the selected splits")
    return crops


def build_pack(sources: list[Path], out: Path, kind: PackKind = "detection", fmt: str = "auto",
               max_size: int = 512, quality: int = 90, splits: list[str] | None = None,
               cmap: ClassMap | None = None, holdout: float = 0.0, seed: int = 0,
               max_per_class: int | None = None, context: float = 2.0, workers: int = 2,
               progress: bool = True, folders: list[str] | None = None) -> PackSummary:
    """Write the ``.gkpack`` at ``out`` from ``sources`` (``gesturekit data pack --help`` explains each option)."""
    from gesturekit.data.pack import build_classification_pack, build_detection_pack  # lazy: torch

    if out.suffix != ".gkpack":
        raise GesturekitError(f"{out}: the output must end with .gkpack")
    root = Path(os.path.commonpath([str(s.resolve()) for s in sources]))
    if kind == "detection":
        if folders is not None:
            raise GesturekitError("folders: selects class folders, for --kind classification")
        return build_detection_pack(detection_annotations(sources, fmt, splits, cmap), out, max_size, quality,
                                    root=root, workers=workers, progress=progress)
    crops = crop_sources(sources, fmt, splits, cmap, holdout, max_per_class, seed, folders)
    return build_classification_pack(crops, out, max_size, quality, context, root=root, workers=workers,
                                     progress=progress)
