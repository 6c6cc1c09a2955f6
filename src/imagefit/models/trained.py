"""A run folder's trained model, rebuilt from its recipe and loaded from model.safetensors (nothing unpickled)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import nn

from imagefit.models.factory import build_classifier
from imagefit.runs import Run


def load_trained(run: Run) -> nn.Module:
    """The run's trained ImageClassifier in eval mode, weights from its model.safetensors, with the logit
    shift chosen on val for imbalanced classes (config.json's `prior_adjustment`) in its last bias."""
    model, _, _ = build_classifier(run.recipe.model, len(run.classes), pretrained=False)
    model.load_state_dict(load_file(run.files.model), strict=True)
    shift_logits(model, run.config.get("prior_adjustment", {}).get("offsets"))
    return model.eval()


def shift_logits(model: nn.Module, offsets: list[float] | None) -> None:
    """Add OFFSETS (one a class) to the logits MODEL computes, through the bias of its head's last layer."""
    if offsets:
        with torch.no_grad():
            model.head[-1].bias.add_(torch.tensor(offsets, dtype=model.head[-1].bias.dtype))
