"""``gesturekit infer --processes N``: the sources split over worker processes, as on several GPUs, run here
on the CPU with the shipped models (each run a real subprocess; the workers are its children)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
from PIL import Image

from gesturekit.config.app import AppConfig
from gesturekit.errors import UsageError
from gesturekit.pipeline.processes import process_count, split_sources, visible_gpus
from gesturekit.samples import SAMPLE_VIDEO

INFER = [sys.executable, "-m", "gesturekit.cli.main", "infer"]


def clips(folder: Path, *names: str) -> list[str]:
    """Copies of the shipped clip (325 frames) under ``names`` in ``folder``: sources told apart by their uri."""
    for name in names:
        shutil.copyfile(SAMPLE_VIDEO, folder / name)
    return list(names)


def infer(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*INFER, *args], cwd=folder, capture_output=True, text=True, timeout=300)


def frames_of(jsonl: Path) -> int:
    """The lines of a prediction file, checked: each one JSON, frames numbered 0, 1, ..."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(len(records))), jsonl
    return len(records)


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def staged(folder: Path) -> list[str]:
    """Files a run left under a hidden name (a staged output not put in place)."""
    return sorted(p.name for p in folder.rglob(".*"))


def test_two_processes_write_what_one_does(tmp_path: Path) -> None:
    sources = clips(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    outputs = {}
    for n in (1, 2):
        run = infer(tmp_path, *sources, "--max-frames", "12", "--processes", str(n), "--out-json", f"{n}/p.jsonl",
                    "--out-video", f"{n}/v.mp4")
        assert run.returncode == 0, run.stderr
        outputs[n] = run.stderr.splitlines()
    for i in range(3):
        one, two = tmp_path / "1" / f"p.{i}.jsonl", tmp_path / "2" / f"p.{i}.jsonl"
        assert two.read_bytes() == one.read_bytes() and frames_of(two) == 12
        assert json.loads(two.read_text().splitlines()[0])["source"] == sources[i]
        assert video_frames(tmp_path / "2" / f"v.{i}.mp4") == video_frames(tmp_path / "1" / f"v.{i}.mp4") == 12
    lines = outputs[2]
    assert "process 1 of 2: sources 0, 2" in lines and "process 2 of 2: source 1" in lines  # each has work
    summaries = [line.split(":")[0] for line in lines if " frames, " in line]
    assert summaries == sources  # in source order, as one process prints them
    assert not any(line.startswith("process") for line in outputs[1])
    assert staged(tmp_path) == []


def test_a_failed_worker_is_one_line_and_the_others_finish(tmp_path: Path) -> None:
    """The worker given an image folder cannot write its annotated video; the other one's sources run to
    their end, their outputs in place."""
    a, b = clips(tmp_path, "a.mp4", "b.mp4")
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(tmp_path / "photos" / "x.png")
    run = infer(tmp_path, a, "photos", b, "--max-frames", "10", "--processes", "2", "--out-json", "p.jsonl",
                "--out-video", "v.mp4")
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: the process of source 1 (photos) failed: photos: an annotated video needs a video "
                      "source, not images"]
    assert "Traceback" not in run.stderr
    assert f"{a}: 10 frames" in run.stderr and f"{b}: 10 frames" in run.stderr
    for i in (0, 2):
        assert frames_of(tmp_path / f"p.{i}.jsonl") == video_frames(tmp_path / f"v.{i}.mp4") == 10
    assert not (tmp_path / "p.1.jsonl").exists() and staged(tmp_path) == []


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command's name (state, parent, ...); ``None`` when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [child for child in pids if (fields := _stat(child)) and fields[1] == str(pid) and fields[0] != "Z"]


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def test_a_worker_that_dies_is_reported_not_waited_for(tmp_path: Path) -> None:
    sources = clips(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    process = subprocess.Popen([*INFER, *sources, "--max-frames", "10", "--processes", "2", "--out-json", "p.jsonl"],
                               cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (workers := children(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ended without a result (killed by SIGKILL)" in errors[0], stderr
    lost = [0, 2] if "sources 0 (a.mp4), 2 (c.mp4)" in errors[0] else [1]
    for i in range(3):
        if i in lost:
            assert not (tmp_path / f"p.{i}.jsonl").exists()
        else:
            assert frames_of(tmp_path / f"p.{i}.jsonl") == 10


def signalled_run(folder: Path, signum: int = signal.SIGINT) -> tuple[subprocess.Popen, list[int], list[str]]:
    """Two clips on two processes, whole (325 frames each), sent ``signum`` once both print FPS; the run,
    its workers' ids and its lines."""
    a, b = clips(folder, "a.mp4", "b.mp4")
    process = subprocess.Popen([*INFER, a, b, "--processes", "2", "--out-json", "p.jsonl", "--out-video", "v.mp4",
                                "--perf-interval", "0.2"], cwd=folder, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if {"0", "1"} <= {line.split()[1].rstrip(":") for line in lines if line.startswith("**PERF")}:
                running.set()
        running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert running.wait(120)
    workers = children(process.pid)
    process.send_signal(signum)
    process.wait(60)
    reader.join(10)
    return process, workers, lines


def test_sigint_stops_every_worker_with_valid_outputs(tmp_path: Path) -> None:
    process, _, lines = signalled_run(tmp_path)
    assert process.returncode == 130, lines
    assert "interrupted by SIGINT: outputs hold every frame processed" in lines
    assert not any("Traceback" in line or line.startswith("error:") for line in lines), lines
    for i, name in enumerate(("a.mp4", "b.mp4")):
        n = frames_of(tmp_path / f"p.{i}.jsonl")
        assert 0 < n < 325 and video_frames(tmp_path / f"v.{i}.mp4") == n
        assert f"{name}: {n} frames" in " ".join(lines)
    assert staged(tmp_path) == []


def test_workers_whose_parent_is_killed_stop_with_valid_outputs(tmp_path: Path) -> None:
    _, workers, _ = signalled_run(tmp_path, signal.SIGKILL)
    assert len(workers) == 2
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
    for i in (0, 1):
        n = frames_of(tmp_path / f"p.{i}.jsonl")
        assert 0 < n < 325 and video_frames(tmp_path / f"v.{i}.mp4") == n
    assert staged(tmp_path) == []


def test_sources_are_dealt_in_turn_and_no_process_is_idle() -> None:
    assert split_sources(4, 2) == [[0, 2], [1, 3]]
    assert split_sources(5, 2) == [[0, 2, 4], [1, 3]]
    assert split_sources(2, 8) == [[0], [1]]
    assert split_sources(3, 1) == [[0, 1, 2]]


def test_process_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    three = ["a.mp4", "b.mp4", "c.mp4"]

    def config(device: str, sources: list[str], **sinks: object) -> AppConfig:
        return AppConfig.model_validate({"sources": sources, "primary": {"device": device}, "sinks": sinks})

    assert process_count(config("cuda", three)) == 2  # one per visible GPU
    assert process_count(config("cuda", three[:1])) == 1
    assert process_count(config("cpu", three)) == 1
    assert process_count(config("cpu", three), 2) == 2
    assert process_count(config("cpu", three), 8) == 3  # never more than the sources
    assert process_count(config("cuda", three, preview_port=8080)) == 1
    with pytest.raises(UsageError, match="--preview-port"):
        process_count(config("cpu", three, preview_port=8080), 2)


def test_visible_gpus_without_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1, GPU-8d2c,-1,3")
    assert visible_gpus() == ["1", "GPU-8d2c"]  # CUDA stops at the first invalid entry
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus() == []  # no nvidia-smi: no GPU
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\necho '  MIG 1g.18gb Device 0: (UUID: MIG-b)'\n"
                   "echo 'GPU 1: NVIDIA H200 (UUID: GPU-c)'\n")
    smi.chmod(0o755)
    assert visible_gpus() == ["0", "1"]  # GPUs, not their MIG slices
