"""The CLI's error boundary: every verb on bad input ends in ``error:`` lines, never a traceback."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

from gesturekit.cli import infer as infer_cli
from gesturekit.cli.main import main


@pytest.fixture()
def bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of bad inputs, made the working directory."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "unset.yaml").write_text("model:\n  arch: ${GK_TEST_NOT_SET}\n")
    (tmp_path / "bad.onnx").write_text("garbage")
    (tmp_path / "bad.pt").write_text("garbage")
    (tmp_path / "text.mp4").write_text("not a video")
    monkeypatch.delenv("GK_TEST_NOT_SET", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["gesturekit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


VERBS = [
    ("data convert -f yolo empty -o out", "empty/data.yaml: file not found"),
    ("data validate missing", "missing: not a folder"),
    ("data stats bin.yaml", "bin.yaml: not a KITTI dataset"),
    ("data pack missing -o x.gkpack", "missing: not found"),
    ("data mine empty -o out -m bad.onnx", "bad.onnx: not a readable ONNX model"),
    ("train detector -e bin.yaml -r runs", "bin.yaml: not a UTF-8 text file"),
    ("train classifier -e unset.yaml -r runs", "unset.yaml:2: environment variable ${GK_TEST_NOT_SET} is not set"),
    ("evaluate detector -e missing.yaml -m bad.onnx", "missing.yaml: spec file not found"),
    ("evaluate classifier -e bin.yaml -m x", "bin.yaml: not a UTF-8 text file"),
    ("prune -m bad.pt -o out.pt", "bad.pt: not a readable checkpoint"),
    ("export -m bad.pt -o out.onnx", "bad.pt: not a readable checkpoint"),
    ("infer text.mp4", "text.mp4: cannot read video"),
    ("infer -c bin.yaml", "bin.yaml: not a UTF-8 text file"),
    ("models card no-such-model", "unknown zoo model 'no-such-model'"),
    ("workflow run bin.yaml", "bin.yaml: not a UTF-8 text file"),
]


@pytest.mark.parametrize(("args", "message"), VERBS, ids=[v[0].split(" -")[0] for v in VERBS])
def test_every_verb_on_bad_input_is_one_line(bad: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture, args: str, message: str) -> None:
    code, err = run_main(monkeypatch, capsys, args.split())
    assert code == 1, err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("error: ") and message in line


def test_a_bad_option_is_typers_own_message(bad: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    code, err = run_main(monkeypatch, capsys, ["infer", "--no-such-option"])
    assert code == 2 and "No such option: --no-such-option" in err and "Traceback" not in err


def test_an_unexpected_error_is_one_line_naming_its_saved_traceback(
        bad: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something the code did not expect\nsecond line")

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(bad))
    monkeypatch.setattr(infer_cli, "open_sources", broken)
    code, err = run_main(monkeypatch, capsys, ["infer", "text.mp4"])
    assert code == 1 and "Traceback" not in err
    (line,) = err.splitlines()
    match = re.fullmatch(r"error: unexpected RuntimeError: something the code did not expect "
                         r"\(traceback saved to (.+)\)", line)
    assert match, line
    saved = Path(match.group(1)).read_text()
    assert saved.startswith("gesturekit infer text.mp4") and "Traceback" in saved and "broken" in saved
    assert Path(match.group(1)).parent == bad / "gesturekit"


def test_a_missing_extra_is_named_in_one_line() -> None:
    from gesturekit.errors import missing_extra

    assert missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch")) == "train"
    assert missing_extra(ModuleNotFoundError("No module named 'tritonclient.grpc'", name="tritonclient.grpc")) == "serve"
    assert missing_extra(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None
    assert missing_extra(ValueError("torch")) is None
