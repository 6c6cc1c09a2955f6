"""On a CUDA GPU: training images/s of backbones under mixed precision, and the loader's rate beside them.

    python3 benchmarks/gpu_speed.py --models tf_efficientnet_lite1:240,convnext_tiny:224 \
        --data /tmp/cifar10.zip --json benchmarks/results/issue31-gpu-speed.json

Model rows: synthetic input already on the GPU (no decode), one training step = forward, backward and
AdamW, under torch.autocast at bf16 and at fp16 (fp16 with a GradScaler), NCHW (as timm's published
benchmark-train-amp-nchw tables) and channels_last; `--batch` images a step (timm's tables use 256 for
both models), `--steps` timed steps after `--warmup`. Loader rows (with `--data`): imagefit's own
training loader (PIL decode + torchvision v2 augmentation in `default_workers` processes) at the first
model's size, against torchvision.io.decode_jpeg on the GPU (the same JPEG bytes in batches, then a
resize to that size on the GPU), so one can tell whether the CPU loader holds the GPU back; they run first
(the first lease's time ran out before them).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import zipfile
from pathlib import Path

import timm
import torch
import torchvision
from torchvision.io import decode_jpeg
from torchvision.transforms.v2 import functional as F

from imagefit.config import Recipe
from imagefit.data import assign_splits, scan
from imagefit.data.datamodule import ImageDataModule, default_workers
from imagefit.models import build_classifier


def train_rate(name: str, size: int, *, batch: int, dtype: torch.dtype, channels_last: bool, steps: int, warmup: int):
    """Images/s of forward + backward + AdamW on the GPU, and the peak GPU memory in GiB."""
    model = timm.create_model(name, pretrained=False, num_classes=1000).cuda().train()
    images = torch.randn(batch, 3, size, size, device="cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (batch,), device="cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step():
        with torch.autocast("cuda", dtype=dtype):
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    rate = batch * steps / (time.perf_counter() - started)
    return rate, torch.cuda.max_memory_allocated() / 2**30


def loader_rate(data: Path, size: int, *, batches: int) -> tuple[float, int]:
    """Images/s of imagefit's training loader (CPU decode and augmentation) at `size`, and its workers."""
    recipe = Recipe().override(image_size=size, batch_size=256, num_workers=-1)
    inventory = scan(data)
    samples = assign_splits(inventory.samples, val_split=0.1, test_split=0.0, seed=0)
    _, preprocess, _ = build_classifier(recipe.model, len(inventory.classes))
    datamodule = ImageDataModule(samples, inventory.classes, preprocess, data=recipe.data, augment=recipe.augment)
    iterator = iter(datamodule.train_dataloader())
    next(iterator)  # worker start-up is not the steady rate
    started, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        seen += len(images)
    rate = seen / (time.perf_counter() - started)
    del iterator
    return rate, default_workers(-1)


def gpu_decode_rate(data: Path, size: int, *, batch: int, batches: int) -> float:
    """Images/s of torchvision.io.decode_jpeg on the GPU over the zip's JPEG bytes, resized there to `size`."""
    with zipfile.ZipFile(data) as archive:
        names = [n for n in archive.namelist() if n.lower().endswith((".jpg", ".jpeg"))][: batch * (batches + 1)]
        blobs = [torch.frombuffer(bytearray(archive.read(n)), dtype=torch.uint8) for n in names]
    chunks = [blobs[i : i + batch] for i in range(0, len(blobs), batch)]

    def run(chunk):
        decoded = decode_jpeg(chunk, device="cuda")
        return torch.stack([F.resize(image, [size, size], antialias=True) for image in decoded])

    run(chunks[0])
    torch.cuda.synchronize()
    started = time.perf_counter()
    for chunk in chunks[1 : batches + 1]:
        run(chunk)
    torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tf_efficientnet_lite1:240,convnext_tiny:224")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data", type=Path, help="a zip of JPEGs (cifar10.zip) for the loader rows")
    parser.add_argument("--loader-batches", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py measures a CUDA GPU; none is visible")
    torch.backends.cudnn.benchmark = True
    facts = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "cpu_cores": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "batch": args.batch,
        "steps": args.steps,
    }
    print(json.dumps(facts))
    loaders = []
    if args.data:
        size = int(args.models.split(",")[0].split(":")[1])
        rate, workers = loader_rate(args.data, size, batches=args.loader_batches)
        loaders.append({"what": "imagefit training loader (CPU)", "workers": workers, "images_per_s": round(rate, 1)})
        print(f"loader: imagefit's training loader, {workers} workers, {size} px: {rate:.0f} images/s", flush=True)
        rate = gpu_decode_rate(args.data, size, batch=args.batch, batches=args.loader_batches)
        loaders.append({"what": "decode_jpeg on the GPU + resize", "workers": 0, "images_per_s": round(rate, 1)})
        print(f"loader: decode_jpeg(device='cuda') + resize to {size} px: {rate:.0f} images/s", flush=True)
    rows = []
    print("| model | px | precision | memory format | train img/s | peak GPU GiB |")
    print("|---|---|---|---|---|---|")
    settings = [(torch.bfloat16, False), (torch.bfloat16, True), (torch.float16, False), (torch.float16, True)]
    for spec in args.models.split(","):
        name, size = spec.split(":")
        for dtype, channels_last in settings:
            rate, peak = train_rate(
                name,
                int(size),
                batch=args.batch,
                dtype=dtype,
                channels_last=channels_last,
                steps=args.steps,
                warmup=args.warmup,
            )
            torch.cuda.empty_cache()
            precision, layout = str(dtype).split(".")[-1], "channels_last" if channels_last else "nchw"
            rows.append(
                {
                    "model": name,
                    "size": int(size),
                    "precision": precision,
                    "layout": layout,
                    "train_images_per_s": round(rate, 1),
                    "peak_gpu_gib": round(peak, 2),
                }
            )
            print(f"| {name} | {size} | {precision} | {layout} | {rate:.0f} | {peak:.1f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "models": rows, "loaders": loaders}, indent=1))


if __name__ == "__main__":
    main()
