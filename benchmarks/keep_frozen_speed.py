"""Fine-tuning step time with the backbone's first layers frozen (`--keep-frozen`), side by side in one process.

    python3 benchmarks/keep_frozen_speed.py --model tf_efficientnet_lite0 --size 192 --shares 0,0.005,0.01,0.02

One 32-image step as imagefit's CPU fine-tuning runs it: micro batches of 8 with gradients
accumulated, channels_last, fp32, AdamW, BatchNorm in eval mode. The shares take turns, round
after round, so load on the machine falls on all of them alike; each share's figure is its
fastest step. Prints one row per share: frozen parameters, step seconds, and the ratio to share 0.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch

from imagefit.training.callbacks import keep_batchnorm_statistics
from imagefit.training.schedule import freeze_early_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--shares", default="0,0.005,0.01,0.02")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--micro", type=int, default=8)
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=10).to(memory_format=torch.channels_last)  # speed only
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(32, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (32,))
    total = sum(p.numel() for p in model.parameters())

    def step() -> float:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for start in range(0, 32, args.micro):
            logits = model(images[start : start + args.micro])
            loss = torch.nn.functional.cross_entropy(logits, targets[start : start + args.micro])
            (loss * args.micro / 32).backward()
        optimizer.step()
        return time.perf_counter() - started

    fastest = {share: float("inf") for share in shares}
    frozen = {}
    model.train()
    keep_batchnorm_statistics(model)
    for round_ in range(args.rounds + 1):
        for share in shares:
            for parameter in model.parameters():  # a bare timm model: the backbone itself
                parameter.requires_grad_(True)
            freeze_early_layers(model, share)
            frozen[share] = sum(p.numel() for p in model.parameters() if not p.requires_grad)
            seconds = step()
            if round_ > 0:  # round 0 warms every setting up
                fastest[share] = min(fastest[share], seconds)
    print("| model | size | keep_frozen | frozen parameters | step s (32 images) | vs 0 |")
    print("|---|---|---|---|---|---|")
    for share in shares:
        print(
            f"| {args.model} | {args.size} | {share} | {frozen[share]:,} ({frozen[share] / total:.2%}) "
            f"| {fastest[share]:.3f} | {fastest[share] / fastest[shares[0]]:.2f} |"
        )


if __name__ == "__main__":
    main()
