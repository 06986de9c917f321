"""``gesturekit data pack``: build a ``.gkpack`` training pack from datasets or class folders."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from gesturekit.data.classmap import PRESETS, build_class_map
from gesturekit.data.convert import FORMATS
from gesturekit.data.pack_inputs import FOLDERS, build_pack

if TYPE_CHECKING:
    from gesturekit.data.pack import PackSummary

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
    folders: Annotated[
        str | None,
        typer.Option(help="Class folders: pack only these folders, comma-separated (e.g. like,fist); "
                     "the hold-out of a folder is the same in any subset."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes that resize and encode images.")] = 2,
) -> None:
    """Pack images, boxes and splits into one .gkpack file (help text: ``HELP``)."""
    wanted = _names(splits)
    summary = build_pack(sources, out, kind.value, fmt, max_size, quality, wanted,
                         build_class_map(class_map_preset, class_map), holdout, seed, max_per_class, context,
                         workers, folders=_names(folders))
    _print_summary(summary)


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def register(app: typer.Typer) -> None:
    """Add the ``pack`` command to the ``data`` command group."""
    app.command("pack", help=HELP)(pack)
