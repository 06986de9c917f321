"""docs/models.md (and the README's table of shipped models) regenerate identically from the zoo's files."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "release" / "models_doc.py"


def test_models_doc_is_what_the_zoo_generates():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_models_doc_and_readme_links_resolve():
    for doc in (REPO / "docs" / "models.md", REPO / "README.md"):
        targets = [t for t in re.findall(r"\]\(([^)#\s]+)\)", doc.read_text()) if "://" not in t]
        assert targets and all((doc.parent / t).exists() for t in targets), doc
