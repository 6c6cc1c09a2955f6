"""Is the loader the bottleneck? Decode + augmentation images/s against the model's training images/s.

    python3 benchmarks/loader_vs_model.py ../shared/data/clothing-small --size 192 --batches 20

Measured in one process, one after the other on the same cores: imagefit's training loader
(torchvision v2 augmentation) with JPEG draft decode (the default) and with full-size decode,
with 0 and with the default number of workers; then one training step of the model
(forward, backward, AdamW; channels_last) on batches already in memory. On a CPU the two share
the cores, so the real loop runs at about 1 / (1/loader + 1/model) when workers are busy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from imagefit.config import Recipe
from imagefit.data import assign_splits, scan
from imagefit.data.datamodule import ImageDataModule, default_workers
from imagefit.models import build_classifier


def loader_rate(datamodule: ImageDataModule, *, batches: int) -> float:
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up is not the steady rate
    started, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        seen += len(images)
    rate = seen / (time.perf_counter() - started)
    del iterator
    return rate


def model_rate(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, *, steps: int) -> float:
    model = model.to(memory_format=torch.channels_last).train()
    images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return len(images) * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    recipe = Recipe().override(image_size=args.size)
    inventory = scan(args.data)
    samples = assign_splits(inventory.samples, val_split=0.1, test_split=0.0, seed=0)
    model, preprocess, _ = build_classifier(recipe.model, len(inventory.classes))
    print(f"torch threads {torch.get_num_threads()}, {args.size} px, batch {recipe.data.batch_size}")
    print("| what | workers | images/s |")
    print("|---|---|---|")
    for workers in (0, default_workers(-1)):
        for draft in (True, False):
            data = recipe.override(num_workers=workers).data
            datamodule = ImageDataModule(samples, inventory.classes, preprocess, data=data, augment=recipe.augment)
            if not draft:
                datamodule.train_set.decode_size = 0  # full-size decode, then the same crops
            rate = loader_rate(datamodule, batches=args.batches)
            what = "loader, JPEG draft decode" if draft else "loader, full-size decode"
            print(f"| {what} | {workers} | {rate:.1f} |", flush=True)
    images, targets = next(iter(datamodule.train_dataloader()))
    rate = model_rate(model, images, targets, steps=3)
    print(f"| model training step (channels_last, fp32) | - | {rate:.1f} |")


if __name__ == "__main__":
    main()
