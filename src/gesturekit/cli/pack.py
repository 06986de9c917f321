"""``gesturekit data pack``: build a ``.gkpack`` training pack from datasets or class folders."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from gesturekit.data.classmap import PRESETS, ClassMap, build_class_map
from gesturekit.data.convert import FORMATS, read_source
from gesturekit.data.records import ImageAnnotation
from gesturekit.errors import GesturekitError

if TYPE_CHECKING:
    from gesturekit.data.pack import CropSource, PackSummary

FOLDERS = "folders"
HELP = (
    "Pack images, boxes and splits into one compact .gkpack file for fast training.\n\n"
    "Images are resized so their long side is at most --max-size and stored as JPEG. A detection pack "
    "keeps whole frames and every box. A classification pack keeps one crop per hand: cut from frames "
    "with boxes with --context around the box, or the tight crops of class folders; its class is the "
    "box label or folder name, renamed by the class map.\n\n"
    "Examples:\n\n"
    "gesturekit data pack datasets/egohands -o egohands.gkpack --splits train,val\n\n"
    "gesturekit data pack hagrid/crops -o crops.gkpack --kind classification --max-size 96 "
    "--class-map-preset hagrid-gesturenet --holdout 0.15 --max-per-class 1000"
)


class Kind(str, Enum):
    detection = "detection"
    classification = "classification"


def _source_format(src: Path, fmt: str) -> str:
    """The format of ``src``: ``kitti`` when it has ``images/``, else ``folders`` (class folders)."""
    if not src.exists():
        raise GesturekitError(f"{src}: not found")
    if fmt != "auto":
        return fmt
    return "kitti" if (src / "images").is_dir() else FOLDERS


def _read_splits(src: Path, fmt: str, wanted: list[str] | None) -> dict[str, list[ImageAnnotation]]:
    splits = read_source(fmt, src).splits
    if wanted is None:
        return splits
    missing = [s for s in wanted if s not in splits]
    if missing:
        raise GesturekitError(f"{src}: no split {missing[0]!r} (splits: {', '.join(splits) or 'none'})")
    return {s: splits[s] for s in wanted}


def _print_summary(summary: PackSummary) -> None:
    console = Console()
    console.print(
        f"wrote {summary.path} ({summary.kind}): {summary.images} images, {summary.boxes} boxes, "
        f"{summary.bytes:,} bytes ({summary.bytes / 2**20:.2f} MiB)",
        highlight=False,
    )
    table = Table("split", Column("images", justify="right"), show_edge=False)
    for split, n in sorted(summary.splits.items()):
        table.add_row(split, str(n))
    console.print(table)
    classes = ", ".join(f"{k} {v}" for k, v in sorted(summary.classes.items()))
    console.print(f"boxes per class: {classes or 'none'}", highlight=False)


def pack(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="KITTI dataset directories (or other formats, see --format) and/or class-folder roots "
            "(ROOT/<class>/*.jpg, classification only).",
            metavar="SRC",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--output", "-o", help="The .gkpack file to write.", show_default=False)
    ],
    kind: Annotated[
        Kind,
        typer.Option(
            help="detection: whole frames with every box; classification: one hand crop per record."
        ),
    ] = Kind.detection,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help=f"Source format: auto (kitti if SRC/images exists, else {FOLDERS}), "
            f"{FOLDERS}, {', '.join(FORMATS)}.",
        ),
    ] = "auto",
    max_size: Annotated[int, typer.Option(help="Longest side of a stored image (never upscaled).")] = 512,
    quality: Annotated[int, typer.Option(help="JPEG quality (1-100).")] = 90,
    splits: Annotated[
        str | None,
        typer.Option(help="Comma-separated splits to pack, e.g. train,val (default: every split)."),
    ] = None,
    class_map: Annotated[
        str | None,
        typer.Option(
            help="Rename classes: SRC=DST,... e.g. like=thumbs_up,peace=two (applied on top of the preset)."
        ),
    ] = None,
    class_map_preset: Annotated[
        str | None, typer.Option(help=f"Named class map: {', '.join(PRESETS)}.")
    ] = None,
    holdout: Annotated[
        float,
        typer.Option(
            help="Class folders: fraction of each folder written as split 'test' (seeded); "
            "the rest is 'train'."
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out and of --max-per-class.")] = 0,
    max_per_class: Annotated[
        int | None,
        typer.Option(
            help="Class folders: keep at most N train images of each folder (seeded), to fit a size budget."
        ),
    ] = None,
    context: Annotated[
        float,
        typer.Option(
            help="Classification from frames: cut the hand box enlarged this much "
            "(square, clipped to the frame)."
        ),
    ] = 2.0,
    workers: Annotated[int, typer.Option(help="Processes that resize and encode images.")] = 2,
) -> None:
    """Pack images, boxes and splits into one .gkpack file (help text: ``HELP``)."""
    from gesturekit.data.pack import build_classification_pack, build_detection_pack  # lazy: torch

    if out.suffix != ".gkpack":
        raise GesturekitError(f"{out}: the output must end with .gkpack")
    wanted = [s.strip() for s in splits.split(",") if s.strip()] if splits else None
    cmap = build_class_map(class_map_preset, class_map)
    root = Path(os.path.commonpath([str(s.resolve()) for s in sources]))
    if kind is Kind.detection:
        summary = build_detection_pack(
            _detection_annotations(sources, fmt, wanted, cmap),
            out,
            max_size,
            quality,
            root=root,
            workers=workers,
        )
    else:
        crops = _crop_sources(sources, fmt, wanted, cmap, holdout, max_per_class, seed)
        summary = build_classification_pack(
            crops, out, max_size, quality, context, root=root, workers=workers
        )
    _print_summary(summary)


def _detection_annotations(
    sources: list[Path], fmt: str, wanted: list[str] | None, cmap: ClassMap | None
) -> dict[str, list[ImageAnnotation]]:
    merged: dict[str, list[ImageAnnotation]] = {}
    for src in sources:
        src_fmt = _source_format(src, fmt)
        if src_fmt == FOLDERS:
            raise GesturekitError(
                f"{src}: class folders have no boxes; use --kind classification or a dataset with labels"
            )
        for split, anns in _read_splits(src, src_fmt, wanted).items():
            merged.setdefault(split, []).extend(cmap.apply(anns) if cmap else anns)
    if not any(merged.values()):
        raise GesturekitError("nothing to pack: no images in the selected splits")
    return merged


def _crop_sources(
    sources: list[Path],
    fmt: str,
    wanted: list[str] | None,
    cmap: ClassMap | None,
    holdout: float,
    max_per_class: int | None,
    seed: int,
) -> list[CropSource]:
    from gesturekit.data.pack import class_folder_sources, frame_sources

    crops: list[CropSource] = []
    for src in sources:
        src_fmt = _source_format(src, fmt)
        if src_fmt == FOLDERS:
            found = class_folder_sources(src, cmap, holdout, max_per_class, seed)
            crops += [c for c in found if wanted is None or c.split in wanted]
        else:
            crops += frame_sources(_read_splits(src, src_fmt, wanted), cmap)
    if not crops:
        raise GesturekitError("nothing to pack: no images in the selected splits")
    return crops


def register(app: typer.Typer) -> None:
    """Add the ``pack`` command to the ``data`` command group."""
    app.command("pack", help=HELP)(pack)
