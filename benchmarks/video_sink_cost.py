"""What the annotated video costs: ``gesturekit infer`` whole process, JSON only vs JSON + ``--out-video``.

The clip is ``asl_hand.25fps.mp4`` (325 portrait frames) looped 4 times (remuxed, not re-encoded).
The two commands alternate, ``--repeats`` times each, in one run under the shared benchmark lock;
frames per second are the clip's frames over each process's wall time, start-up included. Every
annotated video is read back with PyAV: all its frames, at the clip's size.

    python benchmarks/video_sink_cost.py   # -> benchmarks/results/video_sink_cost.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
from common import DATA, RESULTS, bench_lock, cpu_name

from gesturekit.io import atomic_write_json

CLIP = DATA / "video" / "asl_hand.25fps.mp4"


def looped(src: Path, dest: Path, times: int) -> int:
    """Write ``src``'s video stream ``times`` times over into ``dest``; return its frame count."""
    count = 0
    with av.open(str(src)) as first:
        stream = first.streams.video[0]
        duration = None
        with av.open(str(dest), "w") as out:
            copy = out.add_stream_from_template(stream)
            for k in range(times):
                with av.open(str(src)) as again:
                    shift = 0 if duration is None else k * duration
                    last = 0
                    for packet in again.demux(again.streams.video[0]):
                        if packet.dts is None:
                            continue
                        last = max(last, packet.pts + (packet.duration or 0))
                        packet.pts += shift
                        packet.dts += shift
                        packet.stream = copy
                        out.mux(packet)
                        count += 1
                    duration = duration or last
    return count


def run(video: Path, out: Path, with_video: bool) -> float:
    """Wall seconds of one whole ``gesturekit infer`` process."""
    command = [sys.executable, "-m", "gesturekit.cli.main", "infer", str(video), "--out-json", str(out / "p.jsonl"),
               "-q"]
    if with_video:
        command += ["--out-video", str(out / "v.mp4")]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def video_check(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        frames = [(f.width, f.height) for f in container.decode(video=0)]
    return {"frames": len(frames), "sizes": sorted({f"{w}x{h}" for w, h in frames})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "video_sink_cost.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="video-cost-") as tmp:
        work = Path(tmp)
        frames = looped(CLIP, work / "looped.mp4", args.loops)
        with av.open(str(CLIP)) as c:
            size = f"{c.streams.video[0].codec_context.width}x{c.streams.video[0].codec_context.height}"
        times: dict[str, list[float]] = {"json": [], "json+video": []}
        checks = []
        with bench_lock():
            for i in range(args.repeats):
                for key in ("json", "json+video") if i % 2 == 0 else ("json+video", "json"):
                    out = work / f"{key}-{i}"
                    out.mkdir()
                    times[key].append(run(work / "looped.mp4", out, key == "json+video"))
                    if key == "json+video":
                        checks.append(video_check(out / "v.mp4"))
                    print(f"{key}: {times[key][-1]:.2f} s", flush=True)
    fps = {k: [frames / t for t in v] for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in fps.items()}
    result = {
        "clip": f"{CLIP.name} x{args.loops} ({frames} frames, {size})",
        "machine": cpu_name(),
        "command": "gesturekit infer looped.mp4 --out-json p.jsonl -q [--out-video v.mp4], whole process",
        "wall_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "fps": {k: [round(f, 1) for f in v] for k, v in fps.items()},
        "median_fps": {k: round(v, 1) for k, v in median.items()},
        "video_over_json": round(median["json+video"] / median["json"], 3),
        "target": ">= 0.8",
        "annotated_videos": checks,
        "videos_complete": all(c["frames"] == frames and c["sizes"] == [size] for c in checks),
    }
    atomic_write_json(args.out, result)
    print(result["median_fps"], "ratio", result["video_over_json"], "videos complete", result["videos_complete"])


if __name__ == "__main__":
    main()
