"""``gesturekit data``: convert datasets to KITTI, validate them, print their statistics."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from gesturekit.data.classmap import PRESETS, build_class_map
from gesturekit.data.convert import FORMATS, convert as convert_dataset
from gesturekit.data.formats.kitti import read_kitti_dataset, write_kitti_dataset
from gesturekit.data.stats import compute_stats, kitti_stats, render_stats
from gesturekit.data.validate import validate_kitti

app = typer.Typer(
    help=(
        "Prepare training data. Convert a hand dataset (EgoHands, HaGRID, YOLO, Pascal VOC) into "
        "the KITTI layout the trainers read (images/, labels/, splits/), check a KITTI dataset "
        "for problems, and print its statistics (gesturekit data pack then packs it for fast training).\n\n"
        "Typical use: gesturekit data convert --format egohands-csv data/egohands -o work/egohands_kitti, "
        "then gesturekit data validate work/egohands_kitti and gesturekit data stats work/egohands_kitti."
    ),
    no_args_is_help=True,
)

SourceFormat = Enum("SourceFormat", {name.replace("-", "_"): name for name in FORMATS}, type=str)
Preset = Enum("Preset", {name.replace("-", "_"): name for name in PRESETS}, type=str)


class SplitChoice(str, Enum):
    random = "random"
    group = "group"
    keep = "keep"


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


CONVERT_HELP = (
    "Convert a hand dataset into a KITTI dataset (images hard-linked when possible, else copied)."
    "\n\nEvery box is kept: boxes are clipped to their image, and anything changed or dropped "
    "(EgoHands polygons with an empty box, boxes wholly outside the image) is reported as a warning."
    "\n\nFormats (--format), by what SRC holds:"
    "\n\negohands: the original EgoHands release, _LABELLED_SAMPLES/VIDEO/polygons.mat with its "
    "frame_NNNN.jpg files, and metadata.mat; each hand polygon becomes a box."
    "\n\negohands-csv: images/ and SPLIT_labels.csv files with the columns "
    "filename,width,height,class,xmin,ymin,xmax,ymax."
    "\n\nhagrid: annotations/SPLIT/GESTURE.json and frames/IMAGE_ID.jpg."
    "\n\nyolo: data.yaml with the class names, and SPLIT/images with SPLIT/labels folders "
    "(the folder valid becomes the split val)."
    "\n\nvoc: Pascal VOC, Annotations/*.xml, JPEGImages/ and ImageSets/Main/SPLIT.txt."
    "\n\nkitti: a KITTI dataset, to re-split it or rename its classes."
    "\n\nSplits (--split):"
    "\n\nkeep: the source's own splits (egohands-csv train/test, hagrid test/val, yolo "
    "train/val/test); a source without splits becomes the one split 'all'."
    "\n\nrandom: shuffle the images into train and val (--val-fraction of them)."
    "\n\ngroup: like random, but each group (EgoHands video, HaGRID user) lies wholly in train or "
    "wholly in val, for an honest validation score."
    "\n\nrandom and group re-split the source's train and val splits together (all of the source "
    "when it has neither) and keep its other splits, such as test, as they are. The default is keep "
    "when the source has splits, else group when it has groups, else random."
    "\n\nExample: gesturekit data convert --format hagrid data/hagrid -o work/hagrid_hand "
    "--class-map-preset hagrid-hand --split group"
)
VALIDATE_HELP = (
    "Check a KITTI dataset and list every problem with its file and line."
    "\n\nChecks that every image decodes and has a label file, every label line has the 15 KITTI "
    "fields with numbers and x1 < x2, y1 < y2, every box lies inside its image, every class is "
    "allowed (--classes), and every split file names existing images, no image in two splits."
    "\n\nExits with 1 when there is any problem, 0 otherwise."
)


SrcArg = Annotated[Path, typer.Argument(metavar="SRC", help="The source dataset folder.", show_default=False)]
DirArg = Annotated[Path, typer.Argument(metavar="DIR", help="The KITTI dataset folder.", show_default=False)]
OutputOpt = Annotated[
    Path, typer.Option("--output", "-o", help="The KITTI dataset folder to write.", show_default=False)
]
FormatOpt = Annotated[
    SourceFormat,
    typer.Option("--format", "-f", help="What SRC holds (see Formats above).", show_default=False),
]
SplitOpt = Annotated[
    SplitChoice | None, typer.Option(help="How to make the splits (see Splits above).", show_default=False)
]
FractionOpt = Annotated[
    float, typer.Option(min=0.0, max=0.95, help="Share of the images for val with --split random or group.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the random and group splits (same seed, same split).")]
ClassMapOpt = Annotated[str | None, typer.Option(
    help="Rename classes with SOURCE=TARGET, e.g. like=thumbs_up; separate several with commas. "
    "Applied on top of --class-map-preset. A SOURCE that never occurs gets a warning.",
    show_default=False,
)]
PresetOpt = Annotated[Preset | None, typer.Option(
    help="A named class map. hagrid-hand: every label becomes hand (to train a detector). "
    "hagrid-gesturenet: like to thumbs_up, fist to fist, palm and stop to stop, ok to ok, "
    "peace to two, any other label (no_gesture too) to random.",
    show_default=False,
)]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace images/, labels/, splits/ and groups.json already in OUTPUT."),
]
ClassesOpt = Annotated[str | None, typer.Option(
    help="Allowed class names separated by commas, e.g. hand; any other class is a problem.",
    show_default=False,
)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the statistics as JSON instead of tables.")]


@app.command(help=CONVERT_HELP)
def convert(
    src: SrcArg,
    output: OutputOpt,
    fmt: FormatOpt,
    split: SplitOpt = None,
    val_fraction: FractionOpt = 0.1,
    seed: SeedOpt = 0,
    class_map: ClassMapOpt = None,
    class_map_preset: PresetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert SRC to a KITTI dataset at OUTPUT and print its statistics and any warnings."""
    mapping = build_class_map(class_map_preset.value if class_map_preset else None, class_map)
    report = convert_dataset(
        fmt.value, src, output,
        split=split.value if split else None,
        val_fraction=val_fraction, seed=seed, class_map=mapping, overwrite=overwrite,
    )
    err = _console(stderr=True)
    for note in report.notes:
        err.print(f"[yellow]warning:[/yellow] {escape(note)}")
    out = _console()
    render_stats(compute_stats(report.splits), out, title=f"{output} (split: {report.method})")
    out.print(f"Next: gesturekit data validate {escape(str(output))}")


@app.command(help=VALIDATE_HELP)
def validate(root: DirArg, classes: ClassesOpt = None) -> None:
    """Print every problem of ROOT and a summary; exit 1 when there is a problem."""
    allowed = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None
    report = validate_kitti(root, allowed)
    out = _console()
    for problem in report.problems:
        out.print(escape(problem))
    summary = (
        f"{report.images} images, {report.boxes} boxes, splits: "
        + (", ".join(f"{k} {v}" for k, v in report.splits.items()) or "none")
    )
    if report.problems:
        where = escape(f"{root} ({summary})")
        out.print(f"[red]{len(report.problems)} problems[/red] in {where}")
        raise typer.Exit(1)
    out.print(f"[green]ok[/green]: {escape(str(root))}: {escape(summary)}")


@app.command()
def stats(root: DirArg, as_json: JsonOpt = False) -> None:
    """Print images and boxes per split, boxes per class, and a histogram of box sizes."""
    result = kitti_stats(root)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    render_stats(result, _console(), title=str(root))


MINE_HELP = (
    "Mine hand detectors' false positives on a KITTI split: the training data of a hand verifier."
    "\n\nWrites a KITTI dataset with the split's images, their own boxes, and up to --max-per-image "
    "detections (of all --model detectors pooled, best first, near-duplicates dropped) whose IoU with "
    "every box is below --iou-below, labelled background. Pack it with --kind classification to train "
    "a verifier (tools/gpu/make_packs.sh)."
    "\n\nExample: gesturekit data mine work/egohands --split train -m hand-detector "
    "-m hand-detector-pruned-int8 -o work/verifier/egohands"
)


@app.command(help=MINE_HELP)
def mine(
    root: DirArg,
    output: OutputOpt,
    models: Annotated[list[str], typer.Option(
        "--model", "-m", help="A detector (zoo name, .onnx, or .pt checkpoint run by PyTorch); repeat for several.",
        show_default=False,
    )],
    split: Annotated[str, typer.Option(help="The split to mine (written under the same name).")] = "train",
    score_threshold: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Lowest detector score mined: the lowest score a verifier will be asked about.",
    )] = 0.05,
    iou_below: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="A detection is a false positive when its IoU with every box is below this.",
    )] = 0.3,
    max_per_image: Annotated[int, typer.Option(min=0, help="Most false positives kept per image.")] = 8,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write ROOT's SPLIT with mined background boxes to OUTPUT and print its statistics."""
    from gesturekit.evaluation.hard_negatives import mine_hard_negatives
    from gesturekit.runtime.loading import backend_for, load_detector

    detectors = [load_detector(m, backend_for(m), score_threshold=score_threshold) for m in models]
    mined, count = mine_hard_negatives(detectors, read_kitti_dataset(root, split), iou_below, max_per_image)
    written = write_kitti_dataset({split: mined}, output, overwrite=overwrite)
    out = _console()
    render_stats(compute_stats(written), out, title=f"{output} ({count} background boxes mined)")
