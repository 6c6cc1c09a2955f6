"""How much of a backbone's work the RGB stem does: what a one-channel (grayscale) stem could save.

    python3 benchmarks/stem_share.py --model tf_efficientnet_lite1 --size 192 --json results/issue28-stem-share.json

Counts the multiply-adds of every convolution and linear layer on one image (forward hooks), and times
the whole backbone against the same backbone with a one-channel stem (timm's `in_chans=1`, the stem's
weights summed) on a batch of 8, median of 10 passes each, interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import timm
import torch
from torch import nn


def multiply_adds(model: nn.Module, size: int, channels: int) -> dict[str, int]:
    counts: dict[str, int] = {}

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                counts[name] = output.numel() * (module.in_channels // module.groups) * kh * kw
            elif isinstance(module, nn.Linear):
                counts[name] = output.numel() * module.in_features

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        model(torch.zeros(1, channels, size, size))
    for handle in handles:
        handle.remove()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tf_efficientnet_lite1")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rgb = timm.create_model(args.model, pretrained=False, num_classes=0).eval()
    grey = timm.create_model(args.model, pretrained=False, num_classes=0, in_chans=1).eval()
    counts = multiply_adds(rgb, args.size, 3)
    stem = counts["conv_stem"]
    total = sum(counts.values())
    grey_total = sum(multiply_adds(grey, args.size, 1).values())
    batch = {3: torch.randn(8, 3, args.size, args.size), 1: torch.randn(8, 1, args.size, args.size)}
    times = {3: [], 1: []}
    with torch.no_grad():
        for _ in range(12):
            for channels, model in ((3, rgb), (1, grey)):
                started = time.perf_counter()
                model(batch[channels])
                times[channels].append(time.perf_counter() - started)
    result = {
        "model": args.model,
        "size": args.size,
        "stem_multiply_adds": stem,
        "total_multiply_adds": total,
        "stem_share": stem / total,
        "grey_total_multiply_adds": grey_total,
        "saved_share": 1 - grey_total / total,
        "rgb_batch8_s": statistics.median(times[3][2:]),
        "grey_batch8_s": statistics.median(times[1][2:]),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
