"""Epoch wall time of the detector's training loader: a plain DataLoader (persistent workers) against the engine's
``EpochStreamLoader``, whose workers run on into the next epoch.

Real frames from a detection pack go through the real training augmentation in worker processes; the training
step is emulated by a fixed wait (``--step-ms``) so that the figure is the loader's alone on any machine. Set it
near the time the workers take for a batch, as on the GPU machine, where the detector's v1 training ran 123 ms a
step and its 14 workers made about 520 images/s (workflows/gesture-gpu.yaml on an H200); the default suits 2
workers at batch 16 on a 2-core machine. Short epochs (``--batches``) are where a plain loader's restart shows: the
detector recipes' epochs are 30 batches. The first epoch (worker start-up) is left out.

    python benchmarks/epoch_stream.py --pack OUT/packs/det_egohands.gkpack [--workers 2 --batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from common import RESULTS, bench_lock, cpu_name
from torch.utils.data import DataLoader, Subset

from gesturekit.config.specs import DetectionAugmentation
from gesturekit.data.datasets import DetectionDataset, detection_collate
from gesturekit.data.transforms import detection_train_transform
from gesturekit.engine.distributed import RuntimeContext, make_loader
from gesturekit.io import atomic_write_json


def time_epochs(loader, epochs: int, step_s: float) -> dict[str, float]:
    """Median epoch wall time and loader wait over ``epochs`` epochs after a first, untimed one."""
    walls, waits = [], []
    for epoch in range(epochs + 1):
        start = tick = time.perf_counter()
        wait = 0.0
        for _batch in loader:
            wait += time.perf_counter() - tick
            time.sleep(step_s)
            tick = time.perf_counter()
        if epoch:
            walls.append(time.perf_counter() - start)
            waits.append(wait)
    return {"epoch_s": statistics.median(walls), "data_wait_s": statistics.median(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=12, help="batches per epoch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--step-ms", type=float, default=80.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "epoch_stream_cpu.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    aug = DetectionAugmentation(input_size=448)
    frames = DetectionDataset([args.pack], args.split, ["hand"], {}, detection_train_transform(aug, ["hand"]))
    epoch_set = Subset(frames, range(min(len(frames), args.batch_size * args.batches)))
    common = {"batch_size": args.batch_size, "num_workers": args.workers, "collate_fn": detection_collate,
              "drop_last": True}
    loaders = {
        "dataloader_persistent_workers": lambda: DataLoader(epoch_set, shuffle=True, persistent_workers=True,
                                                            **common),
        "epoch_stream": lambda: make_loader(epoch_set, args.batch_size, args.workers, True, detection_collate,
                                            RuntimeContext(), drop_last=True),
    }
    results = {}
    with bench_lock():
        for name, make in loaders.items():
            results[name] = time_epochs(make(), args.epochs, args.step_ms / 1000)
            print(f"{name}: {results[name]['epoch_s']:.2f} s an epoch, {results[name]['data_wait_s']:.2f} s waiting")
    plain, stream = results["dataloader_persistent_workers"]["epoch_s"], results["epoch_stream"]["epoch_s"]
    record = {
        "machine": cpu_name(), "cpus": os.cpu_count(), "pack": args.pack.name, "batch_size": args.batch_size,
        "batches_per_epoch": len(epoch_set) // args.batch_size, "workers": args.workers, "step_ms": args.step_ms,
        "epochs_timed": args.epochs, "results": results, "speedup": plain / stream,
    }
    atomic_write_json(args.out, record)
    print(f"epoch stream {plain / stream:.2f}x -> {args.out}")


if __name__ == "__main__":
    main()
