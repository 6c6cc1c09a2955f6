"""Frozen-backbone features of fixed image views, computed once and cached on disk by file content hash.

While the backbone is frozen its output for a given input never changes, so phase 1 needs each
view of each image through the backbone once, not once an epoch. View 0 is the plain evaluation
view; views 1.. are training augmentations drawn from a generator seeded by (seed, file hash,
view), so the same file gets the same views in every run and the cache stays valid.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imagefit.config import AugmentRecipe
from imagefit.data.cache import VectorStore, digest
from imagefit.data.decode import open_image
from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample
from imagefit.data.transforms import eval_transform, train_decode_size, train_transform
from imagefit.models.chunked import in_chunks
from imagefit.models.digest import weights_digest
from imagefit.progress import transient_progress


class ViewDataset(Dataset):
    """All `views` views of one image per item, [views, 3, H, W], decoded once at the size the crops need."""

    def __init__(
        self,
        samples: list[Sample],
        hashes: list[str],
        preprocess: Preprocess,
        augment: AugmentRecipe,
        *,
        views: int,
        seed: int,
    ):
        self.samples, self.hashes, self.views, self.seed = samples, hashes, views, seed
        self.preprocess = preprocess
        self.plain = eval_transform(preprocess)
        self.augmented = train_transform(preprocess, augment)
        self.decode_size = train_decode_size(preprocess, augment) if views > 1 else preprocess.resize_size

    def __len__(self) -> int:
        return len(self.samples)

    def view(self, image, index: int, view: int) -> torch.Tensor:
        """View `view` of an opened image: 0 is plain, the others augmented with their own fixed seed."""
        if view == 0:
            return self.plain(image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(self.seed, self.hashes[index], view))
            return self.augmented(image)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = open_image(self.samples[index].path, min_size=self.decode_size)
        return torch.stack([self.view(image, index, v) for v in range(self.views)])


def view_seed(seed: int, file_hash: str, view: int) -> int:
    """The augmentation seed of one view of one file: the same in every run with the same seed."""
    key = f"{seed}:{file_hash}:{view}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:7], "little")


def cache_name(backbone: torch.nn.Module, preprocess: Preprocess, augment: AugmentRecipe, *, views: int, seed: int):
    """Cache space name: everything a cached feature depends on besides the image bytes.

    Only the augmentation fields the view transform uses count (MixUp and CutMix do not touch the
    views), so trials that differ only in those share the cache.
    """
    used = ("crop_scale", "hflip", "vflip", "rotate", "color_jitter", "auto_augment")
    augmentation = {name: getattr(augment, name) for name in used} if views > 1 else None
    return f"{digest(weights_digest(backbone), preprocess.to_dict(), augmentation, seed)}-v{views}"


def backbone_features(
    backbone: torch.nn.Module, batch: torch.Tensor, *, device: torch.device, channels_last: bool
) -> torch.Tensor:
    """Pooled features of a batch of images [B, 3, H, W] through the frozen backbone (eval mode), on the CPU."""
    images = batch.to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # not inference_mode: the head trains on these tensors
        return in_chunks(backbone, images).float().cpu()


COMMIT_EVERY = 256  # images whose features are stored together: a killed run keeps all but the last few


def extract_features(
    backbone: torch.nn.Module,
    dataset: ViewDataset,
    *,
    name: str,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
    cache_dir: Path | None = None,
    label: str = "features",
) -> torch.Tensor:
    """Features [N, views, D] of every item of `dataset`, read from the cache where present, the rest computed.

    Computed features are stored as they come (every COMMIT_EVERY images), so an interrupted run
    resumes where it stopped. One array holds the table: cached rows and new ones are copied in once.
    """
    store = VectorStore(cache_dir)
    positions: dict[str, list[int]] = {}
    for index, file_hash in enumerate(dataset.hashes):
        positions.setdefault(file_hash, []).append(index)  # a file may appear twice (an exact duplicate)
    table: np.ndarray | None = None

    def fill(index: int, vectors: np.ndarray) -> None:
        nonlocal table
        if table is None:  # sized by the first row: [N, views, D]
            table = np.empty((len(dataset), *vectors.shape), dtype=np.float32)
        table[index] = vectors

    found = set()
    for file_hash, vectors in store.each(name, dataset.hashes):
        found.add(file_hash)
        for index in positions[file_hash]:
            fill(index, vectors)
    missing = [i for i, h in enumerate(dataset.hashes) if h not in found]
    if missing:
        _compute(backbone, dataset, missing, name, store, fill, batch_size, workers, device, channels_last, label)
    return torch.from_numpy(table if table is not None else np.empty((0, dataset.views, 0), dtype=np.float32))


def _compute(backbone, dataset, missing, name, store, fill, batch_size, workers, device, channels_last, label):
    device = torch.device(device)
    backbone = backbone.eval().to(device)
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    loader = DataLoader(
        torch.utils.data.Subset(dataset, missing),
        batch_size=max(1, batch_size // dataset.views),
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    pending: dict[str, np.ndarray] = {}
    done = 0
    with transient_progress() as progress:
        task = progress.add_task(f"{label} (once; cached)", total=len(missing))
        for batch in loader:
            count, views = batch.shape[:2]
            flat = backbone_features(backbone, batch.flatten(0, 1), device=device, channels_last=channels_last)
            rows = flat.view(count, views, -1).numpy()
            for offset, vectors in enumerate(rows):
                index = missing[done + offset]
                fill(index, vectors)
                pending[dataset.hashes[index]] = vectors
            done += count
            if len(pending) >= COMMIT_EVERY:
                store.put(name, pending, kind="features")
                pending = {}
            progress.advance(task, count)
    store.put(name, pending, kind="features")
