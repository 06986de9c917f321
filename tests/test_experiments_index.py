"""docs/experiments.md indexes every experiment folder, and none of its links dangles."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INDEX = REPO / "docs" / "experiments.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _rows() -> dict[str, str]:
    """Rows of the index table (the one whose header starts with ``experiment``) by their first cell."""
    lines = INDEX.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| experiment |")) + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows[line.split("|")[1].strip()] = line
    return rows


def test_every_experiment_folder_has_one_row_linking_its_files():
    folders = sorted(p.name for p in (REPO / "experiments").iterdir() if p.is_dir())
    rows = _rows()
    assert sorted(rows) == folders
    for name, row in rows.items():
        linked = {(INDEX.parent / target).resolve() for target in LINK.findall(row)}
        files = {p.resolve() for p in (REPO / "experiments" / name).iterdir() if p.suffix in (".yaml", ".json")}
        assert files <= linked, f"{name}: not linked from its row: {sorted(p.name for p in files - linked)}"


def test_no_link_of_the_index_dangles():
    targets = [t.split("#")[0] for t in LINK.findall(INDEX.read_text()) if "://" not in t and not t.startswith("#")]
    assert targets
    missing = [t for t in targets if not (INDEX.parent / t).exists()]
    assert not missing, f"dangling links in {INDEX.name}: {missing}"
