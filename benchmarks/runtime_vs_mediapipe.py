"""The runtime as a user runs it, against MediaPipe's gesture recognizer: whole processes, alternating, one run.

Each measure is a fresh process, timed from its start to its exit (imports, model loading and decoding
included), with its peak resident memory (``os.wait4``'s ``ru_maxrss``):

- one image (a HaGRID test frame): ``gesturekit infer x.jpg --out-json o.jsonl`` against
  ``mediapipe_worker.py images`` on the same file (IMAGE mode, ``num_hands=2``);
- the clip ``asl_hand.25fps.mp4`` looped 4 times (``video_sink_cost.looped``, 1,300 portrait frames):
  ``gesturekit infer`` writing JSON only, the same with ``--out-video``, and ``mediapipe_worker.py video``
  (VIDEO mode, OpenCV decoding); frames per second = frames / the process's wall time;
- the first frame's latency: from the start of the JSON-only clip process to its first line in the JSON
  Lines file (polled every 10 ms).

gesturekit's processes share an ONNX Runtime graph cache made by one cold run first (reported apart).

The measures alternate, ``--repeats`` rounds, under the shared benchmark lock; the JSON gives every
run and the medians, the load average before and after, and whether the issue's targets are met.
MediaPipe runs from its own virtual environment (``/work/shared/peers/mediapipe/README.md``).

    python benchmarks/runtime_vs_mediapipe.py   # -> benchmarks/results/runtime_vs_mediapipe.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DATA, REPO, RESULTS, bench_lock, cpu_name
from video_sink_cost import CLIP, looped, video_check

import gesturekit
from gesturekit.io import atomic_write_json

TASK = REPO.parent / "shared" / "peers" / "mediapipe" / "gesture_recognizer.task"
WORKER = REPO / "benchmarks" / "mediapipe_worker.py"
IMAGE = DATA / "hagrid" / "frames" / "00564a8f-30da-4d82-8637-214c996645dd.jpg"
TARGETS = {"image_time_over_mediapipe": "<= 1.5", "clip_fps_over_mediapipe": ">= 2.0",
           "video_fps_over_json_fps": ">= 0.8", "peak_rss_over_mediapipe": "<= 1.5", "first_frame_s": "<= 1.0"}


def measure(command: list[str], first_line: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` to its end: wall seconds, CPU seconds (user + system, steadier than wall time on a busy
    machine), peak RSS (MB, ``ru_maxrss`` from ``wait4``), stdout, and with
    ``first_line`` (a JSON Lines output) the seconds until its first line was written (the writer's hidden
    partial file, then the file)."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=env)
        first = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if first_line is not None and first is None and _has_line(first_line):
                first = time.perf_counter() - start
            time.sleep(0.01)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr.read().strip()[-500:]}")
        return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
                "first_line_s": first, "stdout": stdout.read()}


def _has_line(path: Path) -> bool:
    """Whether the JSON Lines output ``path`` (or its writer's hidden partial file) holds a whole line."""
    for candidate in (*path.parent.glob(f".{path.stem}.*"), path):
        try:
            with open(candidate, "rb") as f:
                if b"\n" in f.read(65536):
                    return True
        except OSError:  # renamed into place between the glob and the open
            continue
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--mp-python", default="/tmp/mp/bin/python")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime_vs_mediapipe.json")
    args = parser.parse_args()
    ours = [sys.executable, "-m", "gesturekit.cli.main", "infer"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in
                                             ("image", "image_mediapipe", "clip_json", "clip_video", "clip_mediapipe")}
    with tempfile.TemporaryDirectory(prefix="runtime-vs-mp-") as tmp:
        work = Path(tmp)
        clip = work / "looped.mp4"
        frames = looped(CLIP, clip, args.loops)
        (work / "one.txt").write_text(f"{IMAGE}\n")
        commands = {
            "image": lambda out: ours + [str(IMAGE), "--out-json", str(out / "o.jsonl"), "-q"],
            "image_mediapipe": lambda out: [args.mp_python, str(WORKER), "images", str(work / "one.txt"), str(TASK)],
            "clip_json": lambda out: ours + [str(clip), "--out-json", str(out / "p.jsonl"), "-q"],
            "clip_video": lambda out: ours + [str(clip), "--out-json", str(out / "p.jsonl"), "--out-video",
                                             str(out / "v.mp4"), "-q"],
            "clip_mediapipe": lambda out: [args.mp_python, str(WORKER), "video", str(clip), str(TASK)],
        }
        # ours keep ONNX Runtime's optimized graphs in a cache of this run: the first process (cold, reported
        # apart) builds it, the measured ones load it, as every run after a user's first does
        env = {**os.environ, "GESTUREKIT_CACHE_DIR": str(work / "cache")}
        load_before = os.getloadavg()
        checks = []
        with bench_lock():
            cold = measure(commands["image"](work), env=env)
            cold.pop("stdout")
            for i in range(args.repeats):
                order = list(commands) if i % 2 == 0 else list(reversed(commands))
                for key in order:
                    out = work / f"{key}-{i}"
                    out.mkdir()
                    result = measure(commands[key](out), out / "p.jsonl" if key == "clip_json" else None,
                                     env if key in ("image", "clip_json", "clip_video") else None)
                    if key == "clip_video":
                        checks.append(video_check(out / "v.mp4"))
                    if key == "clip_mediapipe":
                        result["mediapipe"] = json.loads(result["stdout"].splitlines()[-1])
                    result.pop("stdout")
                    runs[key].append(result)
                    print(f"{key}: {result['wall_s']:.2f} s, CPU {result['cpu_s']:.2f} s, {result['peak_rss_mb']:.0f} MB",
                          flush=True)
        load_after = os.getloadavg()
    versions = runs["clip_mediapipe"][0]["mediapipe"]["versions"]
    for run in runs["clip_mediapipe"]:
        run["mediapipe"] = {k: run["mediapipe"][k] for k in ("frames", "wall_s", "fps", "frames_with_hand")}

    def median(key: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[key])

    fps = {k: frames / median(k, "wall_s") for k in ("clip_json", "clip_video", "clip_mediapipe")}
    ratios = {
        "image_time_over_mediapipe": median("image", "wall_s") / median("image_mediapipe", "wall_s"),
        "clip_fps_over_mediapipe": fps["clip_json"] / fps["clip_mediapipe"],
        "video_fps_over_json_fps": fps["clip_video"] / fps["clip_json"],
        "peak_rss_over_mediapipe": median("clip_json", "peak_rss_mb") / median("clip_mediapipe", "peak_rss_mb"),
        "first_frame_s": median("clip_json", "first_line_s"),
    }
    met = {k: (v <= float(TARGETS[k].split()[1])) if TARGETS[k].startswith("<=") else v >= float(TARGETS[k].split()[1])
           for k, v in ratios.items()}
    size = checks[0]["sizes"] if checks else None
    result = {
        "machine": cpu_name(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "versions": {"gesturekit": gesturekit.__version__, **{f"mediapipe_{k}": v for k, v in versions.items()}},
        "image": str(IMAGE.relative_to(DATA)),
        "clip": f"{CLIP.name} x{args.loops} ({frames} frames)",
        "commands": {k: " ".join(Path(a).name if "/" in a else a for a in v(Path("out"))) for k, v in commands.items()},
        "image_cold_cache": {k: round(v, 3) for k, v in cold.items() if v is not None},
        "median": {
            "image_wall_s": round(median("image", "wall_s"), 3),
            "image_mediapipe_wall_s": round(median("image_mediapipe", "wall_s"), 3),
            "clip_fps": {k: round(v, 1) for k, v in fps.items()},
            "peak_rss_mb": {k: round(median(k, "peak_rss_mb"), 1) for k in runs},
            "first_frame_s": round(ratios["first_frame_s"], 3),
            "cpu_s": {k: round(median(k, "cpu_s"), 2) for k in runs},
        },
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "targets": TARGETS,
        "met": met,
        "annotated_videos": checks,
        "videos_complete": all(c["frames"] == frames and c["sizes"] == size for c in checks),
        "runs": {k: [{f: (round(v, 3) if isinstance(v, float) else v) for f, v in r.items()} for r in rs]
                 for k, rs in runs.items()},
    }
    atomic_write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("median", "ratios", "met", "load_average_1_5_15")}, indent=1))


if __name__ == "__main__":
    main()
