"""Datasets and the LightningDataModule that feeds training, validation and test."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from imagefit.config import AugmentRecipe, DataRecipe
from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample, locator_name
from imagefit.data.transforms import eval_transform, train_decode_size, train_transform
from imagefit.tasks import Task, task_for
from imagefit.tasks.imbalance import class_weights


class ImageDataset(Dataset):
    """(image tensor, class index) pairs; an image that fails to decode is replaced by the next one."""

    def __init__(
        self,
        samples: list[Sample],
        class_to_idx: dict[str, int],
        transform,
        *,
        decode_size: int = 0,
        task: str | Task = "single-label",
        soft: dict[str, np.ndarray] | None = None,
    ):
        self.samples = samples
        # Class indices, or multi-hot float rows for a multi-label task.
        self.hard = list(task_for(task).targets([s.label for s in samples], list(class_to_idx)))
        self.targets = soft_rows(samples, self.hard, len(class_to_idx), soft) if soft else self.hard
        self.transform = transform
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        for attempt in range(len(self.samples)):
            position = (index + attempt) % len(self.samples)
            try:
                image = open_image(self.samples[position].path, min_size=self.decode_size)
            except UNREADABLE as exc:
                # Checked once before training, so this is a file changed since: never stop an epoch for it.
                warnings.warn(
                    f"{locator_name(self.samples[position].path)}: unreadable ({exc}); using another image",
                    stacklevel=2,
                )
                continue
            return self.transform(image), self.targets[position]
        raise RuntimeError("no image in the dataset can be read")


def soft_rows(samples: list[Sample], hard: list, classes: int, soft: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Probability rows: each sample's soft label where SOFT has one (a pseudo-label), else its one-hot class (or,
    multi-label, its multi-hot row)."""
    multi_hot = len(hard) and np.ndim(hard[0])
    rows = (
        np.array(hard, dtype=np.float32)
        if multi_hot
        else np.eye(classes, dtype=np.float32)[np.asarray(hard, dtype=np.int64)]
    )
    for i, sample in enumerate(samples):
        if sample.path in soft:
            rows[i] = soft[sample.path]
    return list(rows)


def default_workers(requested: int) -> int:
    """Loader workers: the requested number, or (for -1) one per CPU core up to 8."""
    if requested >= 0:
        return requested
    return min(8, os.cpu_count() or 1)


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders over a fixed split, with the augmentation and sampler the recipe asks for."""

    def __init__(
        self,
        samples: list[Sample],
        classes: list[str],
        preprocess: Preprocess,
        *,
        data: DataRecipe,
        augment: AugmentRecipe,
        weighted_sampler: bool = False,
        task: str | Task = "single-label",
        soft: dict[str, np.ndarray] | None = None,
    ):
        super().__init__()
        self.soft = soft  # soft labels of training images (pseudo-labels), by path
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}
        self.preprocess = preprocess
        self.recipe = data
        self.weighted_sampler = weighted_sampler
        self.augment = augment
        self.task = task
        self.by_split = {name: [s for s in samples if s.split == name] for name in ("train", "val", "test")}
        self.train_set = self._train_set(preprocess.size)
        self.sized = {preprocess.size: self.train_set}
        # Progressive resizing: the training image size of each epoch (the loaders are rebuilt every epoch).
        self.size_at: Callable[[int], int] | None = None
        evaluation = eval_transform(preprocess)
        self.eval_sets = {
            name: ImageDataset(
                self.by_split[name], self.class_to_idx, evaluation, decode_size=preprocess.resize_size, task=task
            )
            for name in ("val", "test")
        }

    def _train_set(self, size: int) -> ImageDataset:
        preprocess = dataclasses.replace(self.preprocess, size=size)
        return ImageDataset(
            self.by_split["train"],
            self.class_to_idx,
            train_transform(preprocess, self.augment),
            decode_size=train_decode_size(preprocess, self.augment),
            task=self.task,
            soft=self.soft,
        )

    def _loader(self, dataset: ImageDataset, *, shuffle: bool, sampler=None) -> DataLoader:
        workers = default_workers(self.recipe.num_workers)
        return DataLoader(
            dataset,
            batch_size=self.recipe.forward_batch,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self.weighted_sampler:
            weights = torch.from_numpy(class_weights(self.train_set.hard, len(self.classes)))
            sample_weights = weights[torch.tensor(self.train_set.hard)]
            generator = torch.Generator().manual_seed(self.recipe.seed)
            sampler = WeightedRandomSampler(sample_weights, num_samples=len(sample_weights), generator=generator)
        dataset = self.train_set
        if self.size_at is not None and self.trainer is not None:
            size = self.size_at(self.trainer.current_epoch)
            if size not in self.sized:
                self.sized[size] = self._train_set(size)
            dataset = self.sized[size]
        return self._loader(dataset, shuffle=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_sets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_sets["test"], shuffle=False)

    def eval_loader(self, split: str) -> DataLoader:
        """A plain, unshuffled loader of one split, for final metrics."""
        return self._loader(self.eval_sets[split], shuffle=False)
