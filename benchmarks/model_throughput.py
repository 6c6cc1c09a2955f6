"""Images/s of one training step (forward + backward + AdamW) and of inference, side by side in one process.

    python3 benchmarks/model_throughput.py --model tf_efficientnet_lite0 --sizes 224,192,160 --batch 32

Synthetic input (no decode): this is the model's ceiling on this machine, to compare with the
loader's rate and to choose the image size. Each setting runs `--steps` timed steps after one
warm-up step; channels_last is measured beside the default memory format. `--compile` adds
torch.compile (inductor) with channels_last, its compile time (the warm-up steps) printed apart;
`--threads 1,2` repeats everything at each torch thread count.
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

    started = time.perf_counter()
    step()
    step()  # compiled graphs may recompile on the second call
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return len(batch) * steps / (time.perf_counter() - started), warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--sizes", default="224,192,160")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile with channels_last")
    parser.add_argument("--threads", default="", help="torch thread counts to compare, e.g. 1,2")
    args = parser.parse_args()
    settings = [("contiguous", False), ("channels_last", False)] + ([("channels_last", True)] if args.compile else [])
    print(f"model: {args.model}  batch: {args.batch}")
    print("| threads | size | memory format | compiled | train img/s | inference img/s | warm-up s (train, infer) |")
    print("|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for size in (int(s) for s in args.sizes.split(",")):
            for layout, compiled in settings:
                model = timm.create_model(args.model, pretrained=False, num_classes=10)
                batch = torch.randn(args.batch, 3, size, size)
                if layout == "channels_last":
                    model = model.to(memory_format=torch.channels_last)
                    batch = batch.contiguous(memory_format=torch.channels_last)
                runner = torch.compile(model) if compiled else model
                train, train_warmup = _rate(runner, batch, train=True, steps=args.steps)
                runner = torch.compile(model) if compiled else model  # a fresh graph for inference
                infer, infer_warmup = _rate(runner, batch, train=False, steps=args.steps)
                print(
                    f"| {threads} | {size} | {layout} | {'yes' if compiled else 'no'} | {train:.1f} | {infer:.1f} "
                    f"| {train_warmup:.0f}, {infer_warmup:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
