"""Unknown images: how unlike the training classes an image is, and the threshold that flags it.

A run keeps, in `unknown.safetensors`, the L2-normalised backbone embeddings of (up to INDEX_SIZE)
training images; an image's *unknown score* is its cosine distance to the K-th nearest of them
(deep nearest neighbours, Sun et al. 2022). The threshold is the score that flags FALSE_ALARM of
the known validation images, stored in config.json beside the scores' validation figures. The
maximum softmax probability and the energy score are computed too, for comparison
(`imagefit evaluate RUN OTHER_DATA --unknown`). NumPy and safetensors only: the ONNX path uses it
without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_SIZE = 5000  # training embeddings kept (a seeded sample of larger sets)
NEIGHBOUR = 5  # the K-th nearest training embedding gives the score
FALSE_ALARM = 0.05  # share of known (validation) images flagged at the threshold


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


@dataclass
class UnknownIndex:
    """Training embeddings and the threshold above which an image's score flags it as unknown."""

    embeddings: np.ndarray  # [M, D], L2-normalised
    threshold: float = float("inf")
    neighbour: int = NEIGHBOUR

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine distance of each embedding [N, D] to its K-th nearest training embedding."""
        if not len(embeddings):
            return np.zeros(0, dtype=np.float32)
        similarity = normalise(embeddings) @ self.embeddings.T
        k = min(self.neighbour, similarity.shape[1])
        kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1]
        return (1.0 - kth).astype(np.float32)

    def own_scores(self) -> np.ndarray:
        """Each indexed embedding's score against the others (leave one out): known images, when no val is left."""
        similarity = self.embeddings @ self.embeddings.T
        np.fill_diagonal(similarity, -np.inf)
        k = min(self.neighbour, max(1, similarity.shape[1] - 1))
        kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1]
        return (1.0 - kth).astype(np.float32)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"embeddings": self.embeddings.astype(np.float16)}, str(path))

    @classmethod
    def load(cls, path: Path, *, threshold: float, neighbour: int = NEIGHBOUR) -> UnknownIndex:
        from safetensors.numpy import load_file

        return cls(load_file(str(path))["embeddings"].astype(np.float32), threshold, neighbour)


def build_index(embeddings: np.ndarray, *, seed: int = 0) -> UnknownIndex:
    """An index of (a seeded sample of at most INDEX_SIZE) training embeddings."""
    # Rounded as they are stored (float16), so the threshold set now holds for the index loaded later.
    embeddings = normalise(embeddings).astype(np.float16).astype(np.float32)
    if len(embeddings) > INDEX_SIZE:
        keep = np.random.default_rng(seed).choice(len(embeddings), size=INDEX_SIZE, replace=False)
        embeddings = embeddings[np.sort(keep)]
    return UnknownIndex(embeddings)


def threshold_for(scores: np.ndarray, false_alarm: float = FALSE_ALARM) -> float:
    """The score above which `false_alarm` of these (known) images lie."""
    return float(np.quantile(scores, 1.0 - false_alarm)) if len(scores) else float("inf")


def softmax_score(probabilities: np.ndarray) -> np.ndarray:
    """1 - maximum softmax probability (Hendrycks and Gimpel 2017): higher is more unknown."""
    return 1.0 - np.asarray(probabilities).max(axis=1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The free energy -T log sum exp(logits / T) (Liu et al. 2020): higher is more unknown."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    return (-temperature * (top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1)))).astype(np.float32)


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the ROC curve of telling unknown (positive) from known images by score."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(labels, np.r_[known, unknown])) if len(known) and len(unknown) else float("nan")


def load_unknown_index(run) -> UnknownIndex | None:
    """A run's UnknownIndex (training embeddings and threshold), or None for a run without one."""
    facts = run.config.get("unknown")
    if not facts or not (run.path / facts["index"]).exists():
        return None
    return UnknownIndex.load(run.path / facts["index"], threshold=facts["threshold"], neighbour=facts["neighbour"])
