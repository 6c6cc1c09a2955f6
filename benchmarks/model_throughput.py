"""Images/s of one training step (forward + backward + AdamW) and of inference, side by side in one process.

    python3 benchmarks/model_throughput.py --model tf_efficientnet_lite0 --sizes 224,192,160 --batch 32

Synthetic input (no decode): this is the model's ceiling on this machine, to compare with the
loader's rate and to choose the image size. Each setting runs `--steps` timed steps after one
warm-up step; channels_last is measured beside the default memory format.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch


def _rate(model, batch: torch.Tensor, *, train: bool, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    model.train(train)
    targets = torch.zeros(len(batch), dtype=torch.long)

    def step():
        if train:
            loss = torch.nn.functional.cross_entropy(model(batch), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                model(batch)

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return len(batch) * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--sizes", default="224,192,160")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}  model: {args.model}  batch: {args.batch}")
    print("| size | memory format | train img/s | inference img/s |")
    print("|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        for channels_last in (False, True):
            model = timm.create_model(args.model, pretrained=False, num_classes=10)
            batch = torch.randn(args.batch, 3, size, size)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                batch = batch.contiguous(memory_format=torch.channels_last)
            train = _rate(model, batch, train=True, steps=args.steps)
            infer = _rate(model, batch, train=False, steps=args.steps)
            layout = "channels_last" if channels_last else "contiguous"
            print(f"| {size} | {layout} | {train:.1f} | {infer:.1f} |", flush=True)


if __name__ == "__main__":
    main()
