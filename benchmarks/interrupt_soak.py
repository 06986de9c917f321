"""Interrupt ``gesturekit infer`` at random points of real runs and check what it leaves.

Each run writes the JSON Lines and the annotated video of a real clip with the shipped models;
once the app has processed its first frames it gets SIGINT, SIGTERM or two SIGINTs (a random
gap apart) after a random delay, drawn up to a little past the end of an uninterrupted run (timed
first), so that signals also land while the outputs are being finished. A run counts as a hang
when it is still alive 60 s later (then killed), a crash when its exit code is not 0 / 130 / 143
or its stderr holds a traceback.
Its outputs must be valid: every JSON line parses, frames numbered 0..n-1, the video decodes
with PyAV to exactly n frames of the clip's size, and no staged file is left behind.

    python benchmarks/interrupt_soak.py --runs 50   # -> benchmarks/results/interrupt_soak.json
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
from common import DATA, RESULTS

from gesturekit.io import atomic_write_json

CLIP = DATA / "video" / "asl_hand.25fps.mp4"
PLANS = ("SIGINT", "SIGTERM", "SIGINT twice")
HANG_S = 60.0


def check_outputs(folder: Path, size: tuple[int, int]) -> dict[str, Any]:
    """What an interrupted run left in ``folder`` (``p.jsonl`` and ``v.mp4``): counts and problems."""
    problems = []
    lines = 0
    json_path, video_path = folder / "p.jsonl", folder / "v.mp4"
    if json_path.exists():
        for n, line in enumerate(json_path.read_text().splitlines()):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"p.jsonl:{n + 1}: invalid JSON")
                continue
            if record.get("frame") != n:
                problems.append(f"p.jsonl:{n + 1}: frame {record.get('frame')}, expected {n}")
            lines += 1
    frames = 0
    if video_path.exists():
        try:
            with av.open(str(video_path)) as container:
                stream = container.streams.video[0]
                for frame in container.decode(stream):
                    frames += 1
                    if (frame.width, frame.height) != size:
                        problems.append(f"v.mp4: frame {frames} is {frame.width}x{frame.height}")
                        break
        except av.FFmpegError as exc:
            problems.append(f"v.mp4: unplayable after {frames} frames: {exc}")
    if frames != lines:
        problems.append(f"v.mp4 has {frames} frames, p.jsonl {lines} lines")
    staged = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    if staged:
        problems.append(f"staged files left: {staged}")
    return {"json_lines": lines, "video_frames": frames, "problems": problems}


def interrupted_run(folder: Path, plan: str, delay_s: float, gap_s: float = 0.2,
                    clip: Path = CLIP, extra: tuple[str, ...] = (), measure_only: bool = False) -> dict[str, Any]:
    """Run ``gesturekit infer`` on ``clip`` into ``folder``, signal it ``delay_s`` after its first
    FPS line as ``plan`` says (``measure_only``: never; ``run_s`` is then its time from that line
    to its exit), wait for it, and check its outputs."""
    command = [sys.executable, "-m", "gesturekit.cli.main", "infer", str(clip), "--out-json",
               str(folder / "p.jsonl"), "--out-video", str(folder / "v.mp4"), "--perf-interval", "0.2", *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            stderr.append(line)
            if line.startswith("**PERF"):
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started.wait(HANG_S)
    first_line = time.monotonic()
    if measure_only:
        process.wait()
    else:
        time.sleep(delay_s)
    sent = []
    if process.poll() is None:
        sent.append("SIGTERM" if plan == "SIGTERM" else "SIGINT")
        process.send_signal(signal.SIGTERM if plan == "SIGTERM" else signal.SIGINT)
        if plan == "SIGINT twice":
            time.sleep(gap_s)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                sent.append("SIGINT")
    hang = False
    signalled = time.monotonic()
    try:
        rc = process.wait(HANG_S)
    except subprocess.TimeoutExpired:
        hang = True
        process.kill()
        rc = process.wait()
    ended = time.monotonic()
    exit_s = ended - signalled
    reader.join(5)
    text = "".join(stderr)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
    outcome = check_outputs(folder, size)
    crash = rc not in (0, 130, 143) or "Traceback" in text
    return {"plan": plan, "delay_s": round(delay_s, 3), "run_s": round(ended - first_line, 2),
            "signals_sent": sent, "rc": rc, "hang": hang,
            "exit_s": round(exit_s, 3), "crash": crash,
            **outcome, "stderr_tail": text[-1500:] if (crash or outcome["problems"]) else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max-delay", type=float, default=None,
                        help="Longest wait after the first FPS line (s); default: an uninterrupted run's length + 1 s.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--out", type=Path, default=RESULTS / "interrupt_soak.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    calibration = None
    if args.max_delay is None:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            calibration = interrupted_run(Path(tmp), "SIGINT", 10 * HANG_S, clip=args.clip, measure_only=True)
        assert calibration["rc"] == 0 and not calibration["problems"], calibration
        args.max_delay = calibration["run_s"] + 1.0
        print(f"uninterrupted run: {calibration['run_s']:.1f} s after its first FPS line", flush=True)
    runs = []
    for i in range(args.runs):
        plan = PLANS[i % len(PLANS)]
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            run = interrupted_run(Path(tmp), plan, rng.uniform(0, args.max_delay), rng.uniform(0.0, 0.5), args.clip)
        runs.append(run)
        print(f"{i + 1}/{args.runs} {plan:13s} after {run['delay_s']:.2f}s: rc {run['rc']}, {run['json_lines']} lines, "
              f"{run['video_frames']} frames, exit {run['exit_s']:.2f}s {'; '.join(run['problems'])}", flush=True)
    summary = {
        "runs": len(runs),
        "interrupted": sum(1 for r in runs if r["rc"] in (130, 143)),
        "finished_before_signal": sum(1 for r in runs if r["rc"] == 0),
        "hangs": sum(r["hang"] for r in runs),
        "crashes": sum(r["crash"] for r in runs),
        "runs_with_problems": sum(1 for r in runs if r["problems"]),
        "unplayable_videos": sum(1 for r in runs if any("unplayable" in p for p in r["problems"])),
        "invalid_json_lines": sum(1 for r in runs for p in r["problems"] if "invalid JSON" in p),
        "slowest_exit_after_signal_s": max(r["exit_s"] for r in runs),
    }
    atomic_write_json(args.out, {"clip": str(args.clip.name), "command": "gesturekit infer CLIP --out-json "
                                 "p.jsonl --out-video v.mp4 --perf-interval 0.2", "seed": args.seed,
                                 "max_delay_s": round(args.max_delay, 2), "uninterrupted_run": calibration,
                                 "summary": summary, "runs": runs})
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
