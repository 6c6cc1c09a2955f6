"""Training loader from folders against the same images from LitData shards: images/s and peak RSS by size.

    python3 benchmarks/shard_loader.py SCRATCH --sizes 6000,60000 --json results/issue31-shard-loader.json

For each size N, the first N images of cifar10.zip's train/ (its 50,000; larger sizes repeat them under new
names) are written to SCRATCH/N/folder as class folders, then `imagefit shard` writes SCRATCH/N/shards. Each
source is then read by imagefit's training dataset (its augmentation at 192 px, JPEG draft decode) through a
DataLoader with 2 workers, batch 64, in random order, in a child process of its own, up to 20,000 images:
images/s after the first batch, and the child's peak RSS with its workers'. One size at a time, folder then
shards, on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
READ = 20000


def write_folder(folder: Path, count: int) -> None:
    with zipfile.ZipFile(SHARED / "cifar10.zip") as archive:
        members = sorted(n for n in archive.namelist() if "/train/" in n and n.endswith((".png", ".jpg")))
        for index in range(count):
            name = members[index % len(members)]
            label = name.split("/")[-2]
            target = folder / label / f"{index:06d}-{Path(name).name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))


def child(source: str) -> None:
    import torch

    from imagefit.config import Recipe
    from imagefit.data.datamodule import ImageDataset
    from imagefit.data.preprocess import Preprocess
    from imagefit.data.sources import find_samples
    from imagefit.data.transforms import train_transform

    recipe = Recipe()
    samples = find_samples(Path(source)).samples
    classes = sorted({s.label for s in samples})
    preprocess = Preprocess(size=192, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    dataset = ImageDataset(samples, {c: i for i, c in enumerate(classes)}, train_transform(preprocess, recipe.augment))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:READ]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, order.tolist()), batch_size=64, num_workers=2, persistent_workers=False
    )
    iterator = iter(loader)
    next(iterator)
    started, seen = time.perf_counter(), 0
    for images, _ in iterator:
        seen += len(images)
    rate = seen / (time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"images_per_s": round(rate, 1), "peak_rss_gb": round(peak / 2**20, 3), "images": len(samples)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scratch", type=Path, nargs="?")
    parser.add_argument("--sizes", default="6000,60000")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        root = args.scratch / str(size)
        if not (root / "folder").exists():
            write_folder(root / "folder", size)
        if not (root / "shards").exists():
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "imagefit.cli", "shard", str(root / "folder"), str(root / "shards")],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            print(f"{size}: shard wrote in {time.perf_counter() - started:.0f} s", flush=True)
        for kind in ("folder", "shards"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(root / kind)], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr[-2000:]
            row = {"size": size, "source": kind, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"| {size} | {kind} | {row['images_per_s']} | {row['peak_rss_gb']} GB |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
