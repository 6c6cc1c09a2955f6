"""Training loader from folders against the same images from LitData shards: images/s and peak RSS by size.

    python3 benchmarks/shard_loader.py SCRATCH --sizes 6000,60000 --json results/issue31-shard-loader.json
    python3 benchmarks/shard_loader.py SCRATCH --sizes 6000 --store --json results/issue31-shard-loader-store.json

For each size N, the first N images of cifar10.zip's train/ (its 50,000; larger sizes repeat them under new
names, each copy a different crop of the image, resized back) are written to SCRATCH/N/folder as class folders,
then `imagefit shard` writes SCRATCH/N/shards. With --store, `imagefit shard` also writes them to an object store
(a private S3 server over TLS on loopback, tests/s3_server.py), read back through imagefit's own cache, empty at
the start. Each source is then read by imagefit's training dataset (its augmentation at 192 px, JPEG draft
decode) through a DataLoader with 2 workers, batch 64, in random order, in a child process of its own, up to
20,000 images: images/s after the first batch, and the child's peak RSS with its workers'. One size at a time,
folder, then shards (then the store), on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
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
            data = archive.read(name)
            copy = index // len(members)
            target.write_bytes(cropped(data, copy, Path(name).suffix) if copy else data)


def cropped(data: bytes, copy: int, suffix: str) -> bytes:
    """The image's COPY-th crop (a seeded window of 80-95 % of each side), resized back to its size."""
    import io
    import random

    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    chance = random.Random(copy * 7919 + len(data))
    width, height = image.size
    side = chance.uniform(0.80, 0.95)
    w, h = max(1, round(width * side)), max(1, round(height * side))
    x, y = chance.randint(0, width - w), chance.randint(0, height - h)
    buffer = io.BytesIO()
    image.crop((x, y, x + w, y + h)).resize((width, height)).save(buffer, format="PNG" if suffix == ".png" else "JPEG")
    return buffer.getvalue()


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
    parser.add_argument("--store", action="store_true", help="also shard to a private S3 server and read from it")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if args.store:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from s3_server import private_s3

        args.scratch.mkdir(parents=True, exist_ok=True)
        with private_s3(Path(tempfile.mkdtemp(dir=args.scratch))) as environment:
            return measure(args, {**os.environ, **environment})
    return measure(args, dict(os.environ))


def measure(args, environment: dict) -> None:
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
        sources = {"folder": str(root / "folder"), "shards": str(root / "shards")}
        if args.store:
            sources["store"] = f"s3://bucket/{size}"
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "imagefit.cli", "shard", str(root / "folder"), sources["store"]],
                capture_output=True,
                text=True,
                env=environment,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            print(f"{size}: shard wrote to the store in {time.perf_counter() - started:.0f} s", flush=True)
        for kind, source in sources.items():
            cache = {"IMAGEFIT_CACHE": tempfile.mkdtemp(dir=args.scratch)} if kind == "store" else {}
            done = subprocess.run(
                [sys.executable, __file__, "--child", source],
                capture_output=True,
                text=True,
                env={**environment, **cache},
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
