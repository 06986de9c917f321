"""Load on ``gesture_cascade`` served by a real Triton server: concurrent clients in a second process send
real HaGRID and EgoHands frames (encoded JPEG, one per request) for a fixed time, once with dynamic batching
(max_batch_size 8) and once without (max_batch_size 1). Reports failed requests, throughput, latency
percentiles, the batch sizes Triton formed (its own metrics) and the server's memory (tritonserver and its
backend stubs) every few seconds from the end of a full-load warm-up to the end.

    python benchmarks/serve_load.py [--clients 32] [--seconds 60] [--out benchmarks/results/serve_load.json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
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
from gesturekit.models.zoo import CPU_MODELS, zoo_path
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


def client_worker(url: str, images: list[bytes], stop_at: float, start: int, out: list[Any]) -> None:
    """One client: send the images in turn, one request at a time, until ``stop_at``."""
    import tritonclient.http as http

    client = http.InferenceServerClient(url, network_timeout=120.0)
    latencies, failures, errors = [], 0, set()
    index = start
    while time.monotonic() < stop_at:
        tensor = http.InferInput("image", [1, 1], "BYTES")
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


def run_clients(url: str, files: list[str], clients: int, seconds: float, results: Any) -> None:
    """The load process: ``clients`` threads for ``seconds``; puts (latencies, failures, errors, elapsed)."""
    images = [Path(f).read_bytes() for f in files]
    out: list[Any] = []
    began = time.monotonic()
    threads = [threading.Thread(target=client_worker, args=(url, images, began + seconds, i * 7, out))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    results.put(([x for o in out for x in o[0]], sum(o[1] for o in out), sorted(set().union(*(o[2] for o in out))),
                 elapsed))


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


def one_run(max_batch_size: int, files: list[str], clients: int, seconds: float) -> dict[str, Any]:
    models = {key: zoo_path(name) / "model.onnx" for key, name in CPU_MODELS.items()}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as work:
        repo = write_repository(Path(work) / "repo", models["detector"], models["classifier"], models["verifier"],
                                RepositoryOptions(max_batch_size=max_batch_size, model_backend="python"))
        with TritonServer(repo, PORTS, Path(work)) as server:
            assert server.process is not None
            url = f"{PORTS.host}:{PORTS.http}"
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            # warm-up at full load: ONNX Runtime's arenas grow to the largest batches before memory is read
            warm = context.Process(target=run_clients, args=(url, files, clients, WARMUP_S, results))
            warm.start()
            results.get()
            warm.join()
            before = batch_stats(PORTS.urls()["metrics"])
            load_start = round(os.getloadavg()[0], 2)  # other jobs share the cores: the figures are this machine's now
            load = context.Process(target=run_clients, args=(url, files, clients, seconds, results))
            load.start()
            rss = []
            while load.is_alive() and results.empty():
                rss.append(tree_rss_mb(server.process.pid))
                time.sleep(RSS_EVERY_S)
            latencies, failures, errors, elapsed = results.get()
            load.join()
            rss.append(tree_rss_mb(server.process.pid))
            after = batch_stats(PORTS.urls()["metrics"])
    if not latencies:
        raise SystemExit(f"max_batch_size {max_batch_size}: no request succeeded ({'; '.join(errors[:3])})")
    ms = np.array(latencies) * 1000
    executions = after["executions"] - before["executions"]
    inferences = after["inferences"] - before["inferences"]
    return {
        "max_batch_size": max_batch_size, "dynamic_batching": max_batch_size > 1,
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
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args()
    sets = frame_files()
    files = [str(f) for pair in zip(sets["hagrid"], sets["egohands"]) for f in pair]  # alternate the two sets
    runs = {}
    with bench_lock():
        for name, max_batch in (("dynamic_batching", 8), ("no_batching", 1)):
            runs[name] = one_run(max_batch, files, args.clients, args.seconds)
            print(name, runs[name], flush=True)
    atomic_write_json(args.out, {
        "what": f"{args.clients} concurrent HTTP clients in a second process, one encoded frame per request, "
                f"{args.seconds:.0f} s per run, gesture_cascade ({', '.join(CPU_MODELS.values())}) on tritonserver",
        "frames": {name: len(paths) for name, paths in sets.items()},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "runs": runs,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
