"""Why does the GPU cascade called with frames in host memory dip at batch 16 (169-286 frames/s, against
355-411 at batch 4, 1,650+ at batch 64 and 934-1,509 for the same batches already on the GPU)?

For each batch size, times every call of ``GpuCascade.__call__`` on the endless, wrapping batches that
``benchmarks/gpu_cascade.py`` times (``batches``), after its warm-up on aligned batches; counts the CUDA graphs each
model captured during the timed calls; times the upload alone and the same calls on aligned batches; and keeps
torch.profiler's top operators for the batch given by ``--profile``. Run on the GPU machine:

    python3 experiments/gpu_cascade_host_dip/trace.py --video .gpujob/asl_hand.640x480.mp4 --out OUT/host_dip.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from gpu_cascade import batches, open_decoder, sync  # noqa: E402

from gesturekit.config.app import AppConfig  # noqa: E402
from gesturekit.io import atomic_write_json  # noqa: E402
from gesturekit.pipeline.gpu_cascade import GpuCascade  # noqa: E402


def call_ms(step, device: torch.device, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(times), 2), "p90_ms": round(ordered[int(0.9 * len(ordered))], 2),
            "max_ms": round(ordered[-1], 2), "first_ms": [round(t, 1) for t in times[:8]]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--profile", type=int, default=16)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    config = AppConfig()
    cascade = GpuCascade.from_config(config, args.device)  # FP16, as the benchmark's best rows
    frames = list(open_decoder(args.video))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    result: dict[str, Any] = {"gpu": gpu, "torch": torch.__version__, "frames": len(frames), "rows": []}
    for size in args.batches:
        for start in range(0, len(frames), size):  # the benchmark's warm-up
            cascade(frames[start:start + size])
        before = cascade.graph_counts()
        host = batches(frames, size)
        wrapping = call_ms(lambda: cascade(next(host)), device, args.calls)
        during = {k: v - before[k] for k, v in cascade.graph_counts().items()}
        again = call_ms(lambda: cascade(next(host)), device, args.calls)
        aligned_starts = list(range(0, len(frames) - size + 1, size))
        it = iter(aligned_starts * (args.calls // len(aligned_starts) + 1))
        aligned = call_ms(lambda: cascade(frames[(s := next(it)):s + size]), device, args.calls)
        batch = frames[:size]
        upload = call_ms(lambda: cascade.upload(batch), device, args.calls)
        on_device = cascade.upload(batch)
        sync(device)
        run_only = call_ms(lambda: cascade.run(on_device), device, args.calls)
        row = {"batch": size, "wrapping_host_batches": summary(wrapping), "graphs_captured_while_timed": during,
               "wrapping_again": summary(again), "aligned_host_batches": summary(aligned),
               "upload_only": summary(upload), "run_on_device": summary(run_only)}
        result["rows"].append(row)
        print(row, flush=True)
        atomic_write_json(args.out, result)
    size = args.profile
    host = batches(frames, size)
    for _ in range(5):
        cascade(next(host))
    sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(10):
            cascade(next(host))
        sync(device)
    averages = prof.key_averages()
    def table(key: str, rows: int) -> str:
        return averages.table(sort_by=key, row_limit=rows, max_name_column_width=50)

    result["profile"] = {"batch": size, "calls": 10, "by_cpu": table("self_cpu_time_total", 15),
                         "by_cuda": table("self_cuda_time_total", 12) if device.type == "cuda" else None}
    print(result["profile"]["by_cpu"], flush=True)
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
