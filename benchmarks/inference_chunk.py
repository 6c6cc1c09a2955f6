"""Inference speed and peak memory of a 64-image batch through lite0, whole or in chunks (one process each).

    python3 benchmarks/inference_chunk.py --sizes 192,256 --chunks 32,8

Each setting runs in its own process (so peak RSS is its own): tf_efficientnet_lite0 without its
classifier, eval mode, channels_last, fp32, 2 warm-up passes, the fastest of 3 timed passes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def child(size: int, chunk: int) -> dict:
    import time

    import timm
    import torch

    torch.set_grad_enabled(False)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval().to(memory_format=torch.channels_last)
    images = torch.randn(64, 3, size, size).contiguous(memory_format=torch.channels_last)

    def run():
        return torch.cat([model(images[start : start + chunk]) for start in range(0, 64, chunk)])

    for _ in range(2):
        run()
    fastest = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        run()
        fastest = min(fastest, time.perf_counter() - started)
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1e6
    return {"images_per_s": 64 / fastest, "peak_gb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="192,256")
    parser.add_argument("--chunks", default="32,8")
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        size, chunk = (int(v) for v in args.child.split(","))
        print(json.dumps(child(size, chunk)))
        return
    print("| size | images a pass | inference images/s | peak RSS |")
    print("|---|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        for chunk in [int(c) for c in args.chunks.split(",")]:
            command = [sys.executable, __file__, "--child", f"{size},{chunk}"]
            row = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            print(f"| {size} | {chunk} | {row['images_per_s']:.1f} | {row['peak_gb']:.2f} GB |", flush=True)


if __name__ == "__main__":
    main()
