"""The shipped quick-start workflow end to end on real data, as a user runs it: killed (SIGKILL) in the
middle of training and again after the train stage, each rerun resumes and skips what is done, and the
report it ends with is rendered in headless Chromium with every image loaded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, REPO_ROOT
from test_cards import check_card_against_files

from gesturekit.workflow.state import STATE_FILE, content_digest

WORKFLOW = REPO_ROOT / "workflows" / "quickstart-cpu.yaml"
LIMIT_S = 1500


def _status(out: Path, step: str) -> str | None:
    try:
        return json.loads((out / STATE_FILE).read_text())["steps"].get(step, {}).get("status")
    except (OSError, ValueError):
        return None


def _run(out: Path, data_root: Path, kill_when: Callable[[], bool] | None = None) -> str:
    """``gesturekit workflow run`` in a subprocess; SIGKILLed as soon as ``kill_when()`` holds."""
    log = out.parent / "log.txt"
    env = {**os.environ, "GESTUREKIT_DATA": str(data_root), "COLUMNS": "200"}
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "gesturekit.cli.main", "workflow", "run", str(WORKFLOW),
                                 "-o", str(out)], cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + LIMIT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if kill_when is not None and kill_when():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return log.read_text()
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 0 and kill_when is None, text[-3000:]
    return text


def _skipped(log: str) -> list[str]:
    return [line.split("] ", 1)[1].split(":")[0] for line in log.splitlines() if line.endswith("done, skipped")]


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_quickstart_resumes_after_sigkill_and_ends_with_a_report_that_renders(data_root: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "quickstart"
    detector_run = out / "train" / "detector"
    # 1. killed in the middle of training, once the detector has finished an epoch (its checkpoint, then its log)
    metrics = detector_run / "metrics.jsonl"
    _run(out, data_root, lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1
         and _status(out, "train/detector") == "running")
    # 2. the rerun skips the finished data stages and resumes that training; killed after the train stage
    log = _run(out, data_root, lambda: _status(out, "train/classifier") == "done")
    assert set(_skipped(log)) >= {"convert/egohands", "convert/hands_yolo", "pack/det_train", "pack/hagrid_crops"}
    assert "train/detector (resuming)" in log and "resuming from epoch" in log
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == [1, 2, 3]  # no epoch lost or repeated
    trained = {p: content_digest(p) for p in [detector_run / "best.pt", out / "train" / "classifier" / "best.pt",
                                              out / "packs" / "det_train.gkpack"]}
    # 3. the rerun skips everything up to the train stage, keeps its outputs, and runs to the end
    log = _run(out, data_root)
    assert [s for s in _skipped(log) if not s.startswith(("convert", "pack"))] == ["train/detector",
                                                                                    "train/classifier"]
    assert {p: content_digest(p) for p in trained} == trained
    report = (out / "report.html").read_bytes()
    markdown = (out / "report.md").read_text()
    # 4. nothing left to do: every step skipped, the same report
    log = _run(out, data_root)
    assert len(_skipped(log)) == 28 and (out / "report.html").read_bytes() == report
    served = (out / "triton_repo" / "gesture_cascade" / "1" / "hand_detector.onnx").read_bytes()
    assert served == (out / "models" / "detector-pruned-qat-int8" / "model.onnx").read_bytes()
    assert (out / "triton_repo" / "gesture_classifier" / "config.pbtxt").is_file()

    models = ["detector-fp32", "detector-pruned-fp32", "detector-pruned-qat-int8", "classifier-fp32",
              "classifier-int8"]
    for name in models:
        card = json.loads((out / "cards" / f"{name}.card.json").read_text())
        check_card_against_files(card, out / "models" / name)
        assert [r["batch"] for r in card["throughput"]] == [1, 8] and card["evaluation"]["rows"]
        assert f"[card](cards/{name}.card.md)" in markdown and (out / "cards" / f"{name}.card.md").is_file()
    qat = json.loads((out / "cards" / "detector-pruned-qat-int8.card.json").read_text())["model"]
    full = json.loads((out / "cards" / "detector-fp32.card.json").read_text())["model"]
    assert qat["pruned"] and qat["quantization"] == "qat" and qat["parameters"] < full["parameters"]

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto((out / "report.html").as_uri())
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 100}))")
        browser.close()
    alts = [i["alt"] for i in images]
    assert all(i["ok"] for i in images), images
    for wanted in ("detector: loss and validation", "classifier: loss and validation", "_pr", "_confusion",
                   "pruning trade-off", "exported models side by side"):
        assert any(wanted in alt for alt in alts), (wanted, alts)
