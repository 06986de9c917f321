"""Load on ``gesture_cascade`` served by a real Triton server: concurrent clients in client processes send
real HaGRID and EgoHands frames (encoded JPEG, one per request) for a fixed time, once with dynamic batching
(``--max-batch-size``, default 8) and once without (max_batch_size 1). Reports failed requests, throughput,
latency percentiles, the batch sizes Triton formed (its own metrics) and the server's memory (tritonserver and
its backend stubs) every few seconds from the end of a full-load warm-up to the end.

``--device cuda`` serves what ``gesturekit serve --device cuda`` serves (the batched GPU cascade behind Triton's
dynamic batcher); ``--images DIR`` sends the images of a folder instead of the data sets (on a machine without
them); ``--protocol grpc`` uses Triton's gRPC client.

    python benchmarks/serve_load.py [--clients 32] [--seconds 60] [--out benchmarks/results/serve_load.json]
    python benchmarks/serve_load.py --device cuda --max-batch-size 64 --clients 128 --protocol grpc \\
        --images FRAMES --out benchmarks/results/serve_load_gpu.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from common import DATA, RESULTS, bench_lock, cpu_name

from gesturekit.export.triton import CASCADE, RepositoryOptions, write_repository
from gesturekit.io import atomic_write_json
from gesturekit.images import IMAGE_SUFFIXES
from gesturekit.models.zoo import default_models, zoo_path
from gesturekit.serve.server import Ports, TritonServer

FRAMES_PER_SET = 40
WARMUP_S = 15.0
RSS_EVERY_S = 5.0
PORTS = Ports(http=18700, grpc=18701, metrics=18702)


def frame_files() -> dict[str, list[Path]]:
    """HaGRID frames and the EgoHands test frames (``test_labels.csv``), ``FRAMES_PER_SET`` of each."""
    lines = (DATA / "egohands" / "test_labels.csv").read_text().splitlines()[1:]
    egohands = sorted({line.split(",", 1)[0] for line in lines})[:FRAMES_PER_SET]
    return {"hagrid": sorted((DATA / "hagrid" / "frames").glob("*.jpg"))[:FRAMES_PER_SET],
            "egohands": [DATA / "egohands" / "images" / name for name in egohands]}


def folder_files(folder: Path) -> dict[str, list[Path]]:
    """The images of ``folder`` (sorted), as one set."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"{folder}: no images")
    return {folder.name: files}


def client_worker(url: str, protocol: str, images: list[bytes], stop_at: float, start: int, out: list[Any]) -> None:
    """One client: send the images in turn, one request at a time, until ``stop_at``."""
    if protocol == "grpc":
        import tritonclient.grpc as triton_client
        client = triton_client.InferenceServerClient(url)
    else:
        import tritonclient.http as triton_client  # type: ignore[no-redef]
        client = triton_client.InferenceServerClient(url, network_timeout=120.0)
    latencies, failures, errors = [], 0, set()
    index = start
    while time.monotonic() < stop_at:
        tensor = triton_client.InferInput("image", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[images[index % len(images)]]], dtype=np.object_))
        began = time.perf_counter()
        try:
            client.infer(CASCADE, [tensor]).as_numpy("detections")
            latencies.append(time.perf_counter() - began)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and named
            failures += 1
            errors.add(f"{type(exc).__name__}: {exc}"[:200])
        index += 1
    client.close()
    out.append((latencies, failures, errors))


def run_clients(url: str, protocol: str, files: list[str], clients: int, seconds: float, first: int,
                results: Any) -> None:
    """One load process: ``clients`` threads for ``seconds``; puts (latencies, failures, errors, elapsed)."""
    images = [Path(f).read_bytes() for f in files]
    out: list[Any] = []
    began = time.monotonic()
    threads = [threading.Thread(target=client_worker, args=(url, protocol, images, began + seconds, i * 7, out))
               for i in range(first, first + clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    results.put(([x for o in out for x in o[0]], sum(o[1] for o in out), sorted(set().union(*(o[2] for o in out))),
                 elapsed))


class Load:
    """``clients`` client threads spread over ``processes`` processes (one Python process's GIL holds a few
    dozen gRPC clients to a few hundred requests/s, and lets some of them wait seconds: the server's figure
    would be the client's)."""

    def __init__(self, url: str, protocol: str, files: list[str], clients: int, seconds: float,
                 processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        shares = [clients // processes + (k < clients % processes) for k in range(processes)]
        firsts = [sum(shares[:k]) for k in range(processes)]
        self.processes = [context.Process(target=run_clients,
                                          args=(url, protocol, files, share, seconds, first, self.results))
                          for share, first in zip(shares, firsts) if share]
        for process in self.processes:
            process.start()

    def running(self) -> bool:
        return any(p.is_alive() for p in self.processes) and self.results.qsize() < len(self.processes)

    def wait(self) -> tuple[list[float], int, list[str], float]:
        """Every process's latencies, failures, errors and the longest elapsed time."""
        parts = [self.results.get() for _ in self.processes]
        for process in self.processes:
            process.join()
        return ([x for p in parts for x in p[0]], sum(p[1] for p in parts),
                sorted(set().union(*(p[2] for p in parts))), max(p[3] for p in parts))


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (MiB), from /proc."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return round(total / 1024, 1)


def batch_stats(metrics_url: str) -> dict[str, float]:
    """Requests and model executions of ``gesture_cascade`` (Triton's counters): their ratio is the mean batch."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()

    def counter(name: str) -> float:
        match = re.search(rf'^{name}{{model="{CASCADE}",version="1"}} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    return {"inferences": counter("nv_inference_count"), "executions": counter("nv_inference_exec_count")}


def one_run(max_batch_size: int, files: list[str], clients: int, seconds: float, device: str,
            protocol: str, instances: int, client_processes: int) -> dict[str, Any]:
    models = {key: zoo_path(name) / "model.onnx" for key, name in default_models("onnxruntime", device).items()}
    options = RepositoryOptions(max_batch_size=max_batch_size, instances=instances, model_backend="python",
                                device=device,
                                cascade_backend="torch" if device == "cuda" else "onnxruntime")
    with tempfile.TemporaryDirectory(prefix="serve-load-") as work:
        repo = write_repository(Path(work) / "repo", models["detector"], models["classifier"], models["verifier"],
                                options)
        began = time.monotonic()
        with TritonServer(repo, PORTS, Path(work)) as server:
            assert server.process is not None
            ready_s = round(time.monotonic() - began, 1)  # model loading (and, on CUDA, graph capture)
            url = f"{PORTS.host}:{PORTS.grpc if protocol == 'grpc' else PORTS.http}"
            # warm-up at full load: ONNX Runtime's arenas grow to the largest batches before memory is read
            Load(url, protocol, files, clients, WARMUP_S, client_processes).wait()
            before = batch_stats(PORTS.urls()["metrics"])
            load_start = round(os.getloadavg()[0], 2)  # other jobs share the cores: the figures are this machine's now
            load = Load(url, protocol, files, clients, seconds, client_processes)
            rss = []
            while load.running():
                rss.append(tree_rss_mb(server.process.pid))
                time.sleep(RSS_EVERY_S)
            latencies, failures, errors, elapsed = load.wait()
            rss.append(tree_rss_mb(server.process.pid))
            after = batch_stats(PORTS.urls()["metrics"])
    if not latencies:
        raise SystemExit(f"max_batch_size {max_batch_size}: no request succeeded ({'; '.join(errors[:3])})")
    ms = np.array(latencies) * 1000
    executions = after["executions"] - before["executions"]
    inferences = after["inferences"] - before["inferences"]
    return {
        "max_batch_size": max_batch_size, "dynamic_batching": max_batch_size > 1, "instances": instances,
        "client_processes": client_processes, "server_ready_s": ready_s,
        "requests_ok": len(latencies), "requests_failed": failures, "errors": errors,
        "seconds": round(elapsed, 2), "throughput_rps": round(len(latencies) / elapsed, 2),
        "latency_ms": {q: round(float(np.percentile(ms, int(q[1:]))), 1) for q in ("p50", "p95", "p99")},
        "mean_batch": round(inferences / executions, 2) if executions else None,
        "server_rss_mb": {"after_warmup": rss[0], "end": rss[-1], "max": max(rss), f"every_{RSS_EVERY_S:.0f}s": rss},
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-batch-size", type=int, default=8, help="the dynamic-batching run's max_batch_size")
    parser.add_argument("--instances", type=int, default=1, help="gesture_cascade's instance count")
    parser.add_argument("--client-processes", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                        help="processes the clients are spread over (default: half the cores, at most 8)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--images", type=Path, help="a folder of images to send (default: the data sets' frames)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args()
    sets = folder_files(args.images) if args.images else frame_files()
    files = [str(f) for group in zip(*sets.values()) for f in group]  # alternate the sets
    runs = {}
    client_processes = min(args.client_processes, args.clients)
    with bench_lock():
        for name, max_batch in (("dynamic_batching", args.max_batch_size), ("no_batching", 1)):
            runs[name] = one_run(max_batch, files, args.clients, args.seconds, args.device, args.protocol,
                                 args.instances, client_processes)
            print(name, runs[name], flush=True)
    machine: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count()}
    if args.device == "cuda":
        import torch

        machine["gpu"] = torch.cuda.get_device_name()
    models = ", ".join(default_models("onnxruntime", args.device).values())
    atomic_write_json(args.out, {
        "what": f"{args.clients} concurrent {args.protocol.upper()} clients in "
                f"{client_processes} client processes, one encoded frame "
                f"per request, {args.seconds:.0f} s per run, gesture_cascade ({models}) on tritonserver, "
                f"device {args.device}",
        "command": " ".join(["python", *sys.argv]),
        "frames": {name: len(paths) for name, paths in sets.items()},
        "machine": machine,
        "runs": runs,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
