"""Detector training throughput (images/s) per precision, with the engine's own training step.

Batches are pre-augmented once and kept on the device, so the figure is the GPU step (forward,
loss, backward, optimizer), not JPEG decoding. Run on one GPU, or on several with torchrun:

    python benchmarks/train_throughput.py --pack .pack/det_egohands.gkpack --precisions fp32 tf32 bf16 fp16
    torchrun --nproc_per_node 2 benchmarks/train_throughput.py --pack ... --precisions bf16 --baseline 1GPU.json

``fp32`` is strict FP32 (TF32 tensor cores off); ``tf32`` is FP32 storage with TF32 matmuls and
convolutions (PyTorch's default for cuDNN convolutions); ``bf16``/``fp16`` are autocast (AMP).
With ``--baseline`` (a 1-GPU result of the same settings) the record holds the scaling factor.

Writes ``benchmarks/results/train_throughput_<tag>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gesturekit.config.specs import DetectionAugmentation, Regularizer, Training
from gesturekit.data.datasets import DetectionDataset, detection_collate
from gesturekit.engine.distributed import cleanup, init_runtime
from gesturekit.engine.loop import train_one_epoch
from gesturekit.engine.schedule import build_scheduler
from gesturekit.engine.trainer import build_optimizer, device_name
from gesturekit.models import create_model


def device_batches(items: list, batch_size: int, rank: int, world_size: int, device: torch.device) -> list:
    """This rank's batches, already on the device, so the loop times the training step alone."""
    mine = items[rank::world_size]
    batches = []
    for start in range(0, len(mine) - batch_size + 1, batch_size):
        images, targets = detection_collate(mine[start:start + batch_size])
        batches.append((images.to(device), [{k: v.to(device) for k, v in t.items()} for t in targets]))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=448)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the dense part (forward_levels; the loss stays eager)")
    parser.add_argument("--baseline", type=Path, default=None, help="1-GPU JSON to compute scaling against")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    ctx = init_runtime(None, seed=0)
    aug = DetectionAugmentation(input_size=args.input_size)
    from gesturekit.data.transforms import detection_train_transform

    source = DetectionDataset([args.pack], args.split, ["hand"], {}, detection_train_transform(aug))
    items = [source[i % len(source)] for i in range(args.samples)]
    loader = device_batches(items, args.batch_size, ctx.rank, ctx.world_size, ctx.device)
    results = {}
    if args.channels_last:
        loader = [(images.contiguous(memory_format=torch.channels_last), t) for images, t in loader]
    for name in args.precisions:
        precision = "fp32" if name == "tf32" else name
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = name != "fp32"
        model = create_model("detectnet_v2", pretrained=False).to(ctx.device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if args.compile:
            model.forward_levels = torch.compile(model.forward_levels)
        train = model
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            train = torch.nn.parallel.DistributedDataParallel(train, device_ids=ids)
        spec = Training(batch_size_per_gpu=args.batch_size, precision=precision)
        optimizer = build_optimizer(model, spec)
        scheduler = build_scheduler(optimizer, spec.learning_rate, args.iterations * 2)
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        rates = []
        epoch = 0
        while sum(r["iterations"] for r in rates) < args.iterations:
            stats = train_one_epoch(train, loader, optimizer, scheduler, scaler, ctx, epoch, precision,
                                    Regularizer(), None)
            rates.append(stats)
            epoch += 1
        # the first epoch holds cudnn autotuning and allocator warm-up: report the rest
        timed = rates[1:] or rates
        results[name] = sum(r["images_per_s"] for r in timed) / len(timed)
        if ctx.is_main:
            print(f"{name}: {results[name]:.0f} images/s  (world size {ctx.world_size}, "
                  f"batch {args.batch_size}/GPU, {args.input_size}px)", flush=True)
    if ctx.is_main:
        record = {
            "device": device_name(ctx.device), "world_size": ctx.world_size, "batch_size_per_gpu": args.batch_size,
            "input_size": args.input_size, "channels_last": args.channels_last, "compile": args.compile,
            "images_per_s": results, "torch": torch.__version__,
        }
        if "fp32" in results:
            record["speedup_vs_fp32"] = {p: r / results["fp32"] for p, r in results.items()}
        if args.baseline is not None:
            base = json.loads(args.baseline.read_text())["images_per_s"]
            record["baseline"] = str(args.baseline)
            record["scaling_vs_baseline"] = {p: r / base[p] for p, r in results.items() if p in base}
        out = args.out or Path(f"benchmarks/results/train_throughput_{ctx.world_size}gpu.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record), flush=True)
    cleanup()


if __name__ == "__main__":
    main()
