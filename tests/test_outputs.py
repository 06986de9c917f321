"""Output paths are checked before any model loads: never over an input, never unwritable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from gesturekit.cli.main import main
from gesturekit.errors import UsageError
from gesturekit.pipeline.outputs import check_outputs
from gesturekit.runtime import loading
from test_pipeline_fakes import write_video


@pytest.fixture()
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: every check here must come first."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_detector", refuse)
    monkeypatch.setattr(loading, "load_classifier", refuse)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["gesturekit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_each_problem_is_one_line(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 2)
    (tmp_path / "link.mp4").symlink_to(video)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    outputs = [("--out-video", tmp_path / "link.mp4"), ("--out-json", tmp_path / "folder"),
               ("--out-json", tmp_path / "file" / "p.jsonl"), ("--out-json", Path("/proc/gesturekit/p.jsonl")),
               ("--out-json", tmp_path / "a" / "b" / "p.jsonl"), ("--out-video", tmp_path / "a" / "b" / "p.jsonl")]
    with pytest.raises(UsageError) as err:
        check_outputs(outputs, [video])
    assert err.value.exit_code == 2
    assert str(err.value).splitlines() == [
        f"--out-video {tmp_path / 'link.mp4'}: is an input ({video}); give another path",
        f"--out-json {tmp_path / 'folder'}: is a folder; give a file path",
        f"--out-json {tmp_path / 'file' / 'p.jsonl'}: {tmp_path / 'file'} is not a folder",
        "--out-json /proc/gesturekit/p.jsonl: cannot write in /proc (No such file or directory)",
        f"--out-video {tmp_path / 'a' / 'b' / 'p.jsonl'}: the same file as --out-json {tmp_path / 'a' / 'b' / 'p.jsonl'}",
    ]
    assert not (tmp_path / "a").exists()  # checking creates nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "link.mp4", "v.mp4"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(UsageError, match="cannot write in"):
        check_outputs([("--out-json", tmp_path / "ro" / "p.jsonl")], [])


def test_infer_refuses_to_write_over_its_inputs_before_loading_models(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, no_models: None) -> None:
    video = write_video(tmp_path / "v.mp4", 4)
    before = video.read_bytes()
    code, err = run_main(monkeypatch, capsys, "infer", str(video), "--out-video", str(video), "-q")
    assert (code, err) == (2, f"error: --out-video {video}: is an input ({video}); give another path\n")
    assert video.read_bytes() == before

    image = tmp_path / "in.jpg"
    Image.new("RGB", (32, 24)).save(image)
    code, err = run_main(monkeypatch, capsys, "infer", str(image), "--out-json", str(image))
    assert code == 2 and "is an input" in err and Image.open(image).size == (32, 24)

    config = tmp_path / "app.yaml"
    config.write_text(f"sources: [{video}]\n")
    code, err = run_main(monkeypatch, capsys, "infer", "-c", str(config), "--out-json", str(config))
    assert code == 2 and f"is an input ({config})" in err

    out = tmp_path / "same.out"
    code, err = run_main(monkeypatch, capsys, "infer", str(video), "--out-json", str(out), "--out-video", str(out))
    assert code == 2 and err == f"error: --out-video {out}: the same file as --out-json {out}\n"
    assert "Traceback" not in err
