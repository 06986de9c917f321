"""Pascal VOC XML: ``ROOT/Annotations/<id>.xml``, ``ROOT/JPEGImages/``, ``ROOT/ImageSets/Main/<split>.txt``.

Box corners are read and written as they stand (no 1-based offset), as torchvision and most
exporters do. Split files list image ids; ``trainval`` is used only when ``train`` and ``val``
are absent; annotations listed by no split file form the split ``unlisted`` (never dropped).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from gesturekit.data.formats.kitti import (
    NO_SPLIT,
    UNLISTED,
    check_box,
    check_split_name,
    format_number,
    image_size,
    label_lines,
    link_or_copy,
    parse_number,
    staged_output,
    unique_image_names,
)
from gesturekit.data.records import ImageAnnotation
from gesturekit.errors import GesturekitError
from gesturekit.images import IMAGE_SUFFIXES

VOC_SPLITS = ("train", "val", "test")
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _parse(path: Path) -> ET.Element:
    try:
        root = ET.fromstring(path.read_bytes())
    except OSError as exc:
        raise GesturekitError(f"{path}: cannot read ({exc.strerror})") from None
    except ET.ParseError as exc:
        raise GesturekitError(f"{path}:{exc.position[0]}: invalid XML ({exc})") from None
    if root.tag != "annotation":
        raise GesturekitError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    return root


def _number(element: ET.Element, tag: str, where: str) -> float:
    text = element.findtext(tag)
    if text is None:
        raise GesturekitError(f"{where}: missing <{tag}>")
    return parse_number(text.strip(), where, f"<{tag}>")


def _image_path(path: Path, filename: str | None, images_dir: Path) -> Path:
    candidates = [images_dir / filename.strip()] if filename and filename.strip() else []
    candidates += [images_dir / f"{path.stem}{s}" for s in sorted(IMAGE_SUFFIXES)]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise GesturekitError(f"{path}: image {filename or path.stem!r} not found in {images_dir}")
    return found


def read_voc_xml(path: str | Path, images_dir: str | Path) -> ImageAnnotation:
    """Read one VOC annotation; its image is ``images_dir/<filename>`` (or ``<xml stem>.*``).

    Every ``<object>`` becomes a box, ``difficult`` and ``truncated`` ones included. A ``<size>``
    that disagrees with the image raises.
    """
    path = Path(path)
    root = _parse(path)
    image = _image_path(path, root.findtext("filename"), Path(images_dir))
    width, height = image_size(image)
    size = root.find("size")
    if size is not None and size.findtext("width") is not None:
        declared = (_number(size, "width", f"{path}: size"), _number(size, "height", f"{path}: size"))
        if declared != (0, 0) and declared != (width, height):
            raise GesturekitError(
                f"{path}: <size> {declared[0]:g}x{declared[1]:g} but {image.name} is {width}x{height}"
            )
    boxes = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{path}: object[{k}]"
        label = (obj.findtext("name") or "").strip()
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise GesturekitError(f"{where}: missing <bndbox>")
        boxes.append(check_box(label, *(_number(bndbox, c, where) for c in CORNERS), where))
    return ImageAnnotation(image, width, height, boxes)


def format_voc_xml(annotation: ImageAnnotation, image_name: str) -> str:
    """The VOC XML text of one image (corners with at most 2 decimals)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = image_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", annotation.width), ("height", annotation.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for box in annotation.boxes:
        box = check_box(box.label, box.x1, box.y1, box.x2, box.y2, str(annotation.image))
        obj = ET.SubElement(root, "object")
        fields = (("name", box.label), ("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0"))
        for tag, text in fields:
            ET.SubElement(obj, tag).text = text
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(CORNERS, (box.x1, box.y1, box.x2, box.y2)):
            ET.SubElement(bndbox, tag).text = format_number(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _split_ids(root: Path) -> dict[str, list[tuple[Path, int, str]]]:
    main = root / "ImageSets" / "Main"
    names = [s for s in VOC_SPLITS if (main / f"{s}.txt").is_file()]
    if not {"train", "val"} & set(names) and (main / "trainval.txt").is_file():
        names.insert(0, "trainval")
    return {
        s: [(main / f"{s}.txt", i, line.split()[0]) for i, line in label_lines(main / f"{s}.txt")]
        for s in names
    }


def read_voc(root: str | Path) -> dict[str, list[ImageAnnotation]]:
    """Read a VOC dataset.

    Returns:
        split name -> annotations: the ``ImageSets/Main`` splits plus ``unlisted`` for the
        rest, or the single split ``all`` when there are no split files.
    """
    root = Path(root)
    ann_dir, images_dir = root / "Annotations", root / "JPEGImages"
    xmls = {p.stem: p for p in sorted(ann_dir.glob("*.xml"))}
    if not xmls:
        raise GesturekitError(f"{root}: no Annotations/*.xml found (not a Pascal VOC dataset)")
    split_ids = _split_ids(root)
    if not split_ids:
        return {NO_SPLIT: [read_voc_xml(p, images_dir) for p in xmls.values()]}
    splits: dict[str, list[ImageAnnotation]] = {}
    listed: set[str] = set()
    for split, entries in split_ids.items():
        splits[split] = []
        for split_file, line, image_id in entries:
            if image_id not in xmls:
                raise GesturekitError(f"{split_file}:{line}: no Annotations/{image_id}.xml")
            splits[split].append(read_voc_xml(xmls[image_id], images_dir))
            listed.add(image_id)
    rest = [read_voc_xml(p, images_dir) for stem, p in xmls.items() if stem not in listed]
    if rest:
        splits[UNLISTED] = rest
    return splits


def write_voc(
    splits: Mapping[str, Sequence[ImageAnnotation]],
    out_dir: str | Path,
    overwrite: bool = False,
) -> Path:
    """Write a VOC dataset (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``).

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    for split in splits:
        check_split_name(split)
    everything = [a for anns in splits.values() for a in anns]
    names = unique_image_names([a.image for a in everything])
    texts = {a.image: format_voc_xml(a, names[a.image]) for a in everything}
    with staged_output(out_dir, ["Annotations", "JPEGImages", "ImageSets"], overwrite) as stage:
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (stage / sub).mkdir(parents=True)
        for image, text in texts.items():
            name = names[image]
            link_or_copy(image, stage / "JPEGImages" / name)
            (stage / "Annotations" / f"{Path(name).stem}.xml").write_text(text)
        for split, anns in splits.items():
            ids = "".join(f"{Path(names[a.image]).stem}\n" for a in anns)
            (stage / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    return out_dir
