"""Batch inference of a classifier over a data loader."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module, loader: DataLoader, *, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities [N, C], targets [N]) for every batch of `loader`, in order."""
    model = model.to(device).eval()
    probabilities, targets = [], []
    for images, batch_targets in loader:
        probabilities.append(model(images.to(device)).float().softmax(dim=1).cpu())
        targets.append(torch.as_tensor(batch_targets))
    return torch.cat(probabilities), torch.cat(targets)
