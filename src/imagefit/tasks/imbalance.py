"""How unequal the classes are, and what training does about it (no torch: the loss gets a tensor of these)."""

from __future__ import annotations

from collections import Counter

import numpy as np


def imbalance_ratio(labels: list) -> float:
    """Largest class size over smallest."""
    counts = Counter(labels).values()
    return max(counts) / max(1, min(counts))


def imbalance_handling(setting: str, ratio: float, threshold: float) -> str:
    """What training does about imbalance: 'adjust', 'weights', 'sampler' or 'none' ('auto' picks logit adjustment
    above threshold: evaluation.priors says why)."""
    if setting == "auto":
        return "adjust" if ratio > threshold else "none"
    return setting


def class_weights(labels: list[int], num_classes: int) -> np.ndarray:
    """'Balanced' class weights n / (k * count), as scikit-learn's compute_class_weight gives (float32)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = sorted(set(labels))
    weights = np.ones(num_classes, dtype=np.float32)
    values = compute_class_weight("balanced", classes=np.array(present), y=labels)
    for cls, value in zip(present, values, strict=True):
        weights[cls] = float(value)
    return weights
