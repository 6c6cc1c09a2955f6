"""Training speed and peak memory of one 32-image step, whole or as micro batches (gradients accumulated).

    python3 benchmarks/micro_batch.py --size 192 --micro 32,16,8 --steps 4

Each setting runs in its own process (so peak RSS is its own): tf_efficientnet_lite0, channels_last,
fp32, AdamW, BatchNorm in eval mode as in imagefit's fine-tuning; the fastest of `--steps` steps
after two warm-up steps. Prints one row per micro-batch size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def child(size: int, micro: int, steps: int) -> dict:
    import time

    import timm
    import torch

    model = timm.create_model("tf_efficientnet_lite0", num_classes=10)  # the weights do not change the speed
    model = model.to(memory_format=torch.channels_last)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(32, 3, size, size).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (32,))

    def step():
        for start in range(0, 32, micro):
            loss = torch.nn.functional.cross_entropy(
                model(images[start : start + micro]), targets[start : start + micro]
            )
            (loss * micro / 32).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    fastest = float("inf")
    for _ in range(steps):
        started = time.perf_counter()
        step()
        fastest = min(fastest, time.perf_counter() - started)
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1e6
    return {"micro": micro, "images_per_s": 32 / fastest, "peak_gb": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--micro", default="32,16,8")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--child", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.size, args.child, args.steps)))
        return
    print(f"| micro batch (of 32) | train img/s at {args.size} px | peak RSS |")
    print("|---|---|---|")
    for micro in [int(m) for m in args.micro.split(",")]:
        command = [
            sys.executable,
            __file__,
            "--size",
            str(args.size),
            "--steps",
            str(args.steps),
            "--child",
            str(micro),
        ]
        row = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        print(f"| {micro} | {row['images_per_s']:.1f} | {row['peak_gb']:.2f} GB |", flush=True)


if __name__ == "__main__":
    main()
