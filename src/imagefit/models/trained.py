"""A run folder's trained model, rebuilt from its recipe and loaded from model.safetensors (nothing unpickled)."""

from __future__ import annotations

from safetensors.torch import load_file
from torch import nn

from imagefit.models.factory import build_classifier
from imagefit.runs import Run


def load_trained(run: Run) -> nn.Module:
    """The run's trained ImageClassifier in eval mode, weights from its model.safetensors."""
    model, _, _ = build_classifier(run.recipe.model, len(run.classes), pretrained=False)
    model.load_state_dict(load_file(run.files.model), strict=True)
    return model.eval()
