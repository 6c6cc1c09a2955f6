"""How labels are written and turned into probabilities, for both tasks (NumPy only)."""

from __future__ import annotations

import numpy as np

JOIN = "|"  # a multi-label sample's labels, sorted and joined ("rust|scab"; "" means none of them)


def labels_of(label: str) -> list[str]:
    """The labels a multi-label sample holds."""
    return [part for part in label.split(JOIN) if part]


def joined(labels) -> str:
    return JOIN.join(sorted(set(labels)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities of one label an image (rows sum to one)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Each label's own probability (multi-label)."""
    return 1.0 / (1.0 + np.exp(-logits))


def view_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """[N, C] probabilities: the mean over views of softmax(logits / temperature); logits [N, views, C]."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=-1, keepdims=True)).mean(axis=1)


def share(available: int, fraction: float) -> int:
    """How many of `available` images a split of `fraction` takes: at least one, always leaving one."""
    if fraction <= 0 or available < 2:
        return 0
    return min(max(1, round(available * fraction)), available - 1)
