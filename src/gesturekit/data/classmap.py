"""Class remapping: ``--class-map like=thumbs_up,...`` entries and named presets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from gesturekit.data.records import ImageAnnotation
from gesturekit.errors import GesturekitError


@dataclass(frozen=True)
class ClassMap:
    """A class renaming.

    Attributes:
        mapping: source class -> new class.
        default: the new class of every source class not in ``mapping`` (``None``: unchanged).
    """

    mapping: Mapping[str, str] = field(default_factory=dict)
    default: str | None = None

    def __call__(self, label: str) -> str:
        return self.mapping.get(label, label if self.default is None else self.default)

    def apply(self, annotations: Sequence[ImageAnnotation]) -> list[ImageAnnotation]:
        """Copies of ``annotations`` with every box relabelled (no box is removed)."""
        return [
            replace(a, boxes=[replace(b, label=self(b.label)) for b in a.boxes]) for a in annotations
        ]

    def unused(self, labels: Iterable[str]) -> list[str]:
        """The ``mapping`` keys that are not among ``labels`` (worth a warning: a typo?)."""
        seen = set(labels)
        return [k for k in self.mapping if k not in seen]


PRESETS: dict[str, ClassMap] = {
    # every HaGRID label (18 gestures and no_gesture) is a hand, for detector training
    "hagrid-hand": ClassMap(default="hand"),
    # HaGRID gestures to the 6 GestureNet classes
    "hagrid-gesturenet": ClassMap(
        {"like": "thumbs_up", "fist": "fist", "palm": "stop", "stop": "stop", "ok": "ok", "peace": "two"},
        default="random",
    ),
}


def parse_class_map(text: str) -> dict[str, str]:
    """Parse ``src=dst,src2=dst2`` (spaces around names are ignored).

    Raises:
        GesturekitError: an entry without ``=``, an empty name, a target with whitespace, or a
            source mapped twice to different targets.
    """
    mapping: dict[str, str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        src, sep, dst = (part.strip() for part in entry.partition("="))
        if not sep or not src or not dst:
            raise GesturekitError(f"--class-map entry {entry.strip()!r}: expected SOURCE=TARGET")
        if any(c.isspace() for c in dst):
            raise GesturekitError(f"--class-map entry {entry.strip()!r}: target class contains whitespace")
        if mapping.get(src, dst) != dst:
            raise GesturekitError(f"--class-map: {src!r} is mapped to both {mapping[src]!r} and {dst!r}")
        mapping[src] = dst
    if not mapping:
        raise GesturekitError(f"--class-map {text!r}: no SOURCE=TARGET entries")
    return mapping


def build_class_map(preset: str | None = None, entries: str | None = None) -> ClassMap | None:
    """The preset (if any) with the parsed ``entries`` on top; ``None`` when neither is given."""
    if preset is None and entries is None:
        return None
    if preset is not None and preset not in PRESETS:
        raise GesturekitError(f"unknown class map preset {preset!r} (known: {', '.join(PRESETS)})")
    base = PRESETS[preset] if preset is not None else ClassMap()
    extra = parse_class_map(entries) if entries is not None else {}
    return ClassMap({**base.mapping, **extra}, base.default)
