"""Load test of `imagefit serve` on loopback: throughput, latency percentiles, errors and server memory.

    python3 benchmarks/serve_load.py RUN ../shared/data/clothing-small/test --requests 372 --clients 1,8,32

    python3 benchmarks/serve_load.py - IMAGES --models RUN/model.onnx,RUN/model.int8.onnx,ENS/onnx/ensemble.json
        --batching on --clients 1,32 --json results/F.json

For each backend (onnx, torch), or each of --models (served with the default backend: an .onnx in ONNX Runtime,
an .xml in OpenVINO, an exported ensemble's JSON member by member), and batching (on: --max-batch 32, off:
--max-batch 1) it starts `imagefit serve MODEL` on a free loopback port, sends --requests single-image requests (the
images cycled) from N concurrent clients, with --limit seconds at most per setting, stops the
server, and prints one row per setting. The last row is `imagefit predict`'s offline rate on the
same images with the same backend, in one process: the target is 80% of it with 32 clients.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from imagefit.prediction.inputs import collect_inputs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(run: str, backend: str, max_batch: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "imagefit.cli", "serve", run, "--port", str(port), "--backend", backend]
    command += ["--max-batch", str(max_batch)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server, port
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("the server did not start")


def peak_rss_gb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1e6
    return float("nan")


def load(port: int, images: list[bytes], *, requests: int, clients: int, limit: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    counter = iter(range(requests))
    lock = threading.Lock()
    stop_at = time.monotonic() + limit

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                started = time.perf_counter()
                try:
                    answer = session.post(
                        f"http://127.0.0.1:{port}/predict",
                        files={"files": (f"{index}.jpg", images[index % len(images)], "image/jpeg")},
                    )
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    latencies.append(time.perf_counter() - started)
                    errors[0] += not ok

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    values = np.array(latencies) * 1000
    return {
        "done": len(latencies),
        "throughput": len(latencies) / wall,
        "p50": np.percentile(values, 50),
        "p95": np.percentile(values, 95),
        "p99": np.percentile(values, 99),
        "errors": errors[0],
    }


def offline_rate(run: str, paths: list[str], backend: str) -> float:
    from imagefit.prediction.loading import predict

    model = Path(run) / "model.onnx" if backend == "onnx" else run
    predict(model, paths[:32])  # warm-up: the first batch pays for loading and the runtime's first compile
    started = time.perf_counter()
    predictions = predict(model, paths)
    return len(predictions.paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", help="run folder (with --models: ignored, pass -)")
    parser.add_argument("images")
    parser.add_argument("--requests", type=int, default=372)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds at most per setting")
    parser.add_argument("--backends", default="onnx,torch")
    parser.add_argument("--models", default="", help="comma-separated model paths served instead (backend auto)")
    parser.add_argument("--batching", default="on,off")
    parser.add_argument("--json", type=Path, help="raw rows")
    args = parser.parse_args()
    paths = collect_inputs([args.images])
    images = [Path(p).read_bytes() for p in paths]
    if args.models:
        settings = [(model, model, "auto") for model in args.models.split(",")]
    else:
        settings = [(backend, args.run, backend) for backend in args.backends.split(",")]
    print("| model | batching | clients | requests | images/s | p50 ms | p95 ms | p99 ms | errors | server peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, model, backend in settings:
        for batching in args.batching.split(","):
            server, port = start(model, backend, 32 if batching == "on" else 1)
            try:
                for clients in [int(c) for c in args.clients.split(",")]:
                    row = load(port, images, requests=args.requests, clients=clients, limit=args.limit)
                    row.update(model=name, batching=batching, clients=clients, server_peak_gb=peak_rss_gb(server.pid))
                    rows.append(row)
                    print(
                        f"| {name} | {batching} | {clients} | {row['done']} | {row['throughput']:.1f} "
                        f"| {row['p50']:.0f} | {row['p95']:.0f} | {row['p99']:.0f} | {row['errors']} "
                        f"| {row['server_peak_gb']:.2f} GB |",
                        flush=True,
                    )
            finally:
                server.terminate()
                try:
                    server.wait(timeout=60)
                except subprocess.TimeoutExpired:  # a server that does not stop: its rows are printed already
                    server.kill()
                    server.wait()
        rate = offline_rate(model, paths[: args.requests], backend if backend != "auto" else "model")
        rows.append({"model": name, "batching": "offline predict", "throughput": rate})
        print(f"| {name} | `imagefit predict` offline | - | {min(len(paths), args.requests)} | {rate:.1f} | | | | | |")
    if args.json:
        args.json.write_text(json.dumps({"command": sys.argv, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
