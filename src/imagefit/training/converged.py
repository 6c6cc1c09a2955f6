"""A head fitted to convergence on the cached features: the linear-probe half of LP-FT.

A few epochs of AdamW with full inverse-frequency class weights can leave the head worse than where it
started (magnetic tiles: val accuracy 0.49, 0.36, 0.34 over its three epochs), while a logistic
regression on the same features, solved to the optimum, scored 0.75. Fine-tuning from a poor head
spends its first steps undoing it and distorts the pretrained features on the way (Kumar et al., 2022:
fine-tuning after linear probing). So after the head's epochs, scikit-learn's L-BFGS logistic
regression is fitted on the same training features and class weights at a few strengths, and the head
with the lowest val loss (the same loss the epochs report) is kept. Nothing changes where the trained
head is already the better one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn

STRENGTHS = (0.01, 0.1, 1.0)  # scikit-learn's C: inverse L2 strength, per training row
MOST_ROWS = 20000  # training feature rows the fit reads (a seeded sample of larger caches)


@dataclass(frozen=True)
class HeadFit:
    """What the converged fit measured against the head the epochs trained, on val."""

    strength: float
    loss: float  # val loss of the best converged head
    accuracy: float
    trained_loss: float  # val loss of the head the epochs trained
    trained_accuracy: float
    kept: bool

    def line(self) -> str:
        chosen = "kept it" if self.kept else "kept the trained head"
        return (
            f"head: a logistic regression solved on the cached features (C {self.strength:g}) scored val loss "
            f"{self.loss:.4f}, accuracy {self.accuracy:.4f}; the trained head {self.trained_loss:.4f}, "
            f"{self.trained_accuracy:.4f}: {chosen}"
        )

    def to_dict(self) -> dict:
        return {
            "strength": self.strength,
            "val_loss": round(self.loss, 4),
            "val_accuracy": round(self.accuracy, 4),
            "trained_val_loss": round(self.trained_loss, 4),
            "trained_val_accuracy": round(self.trained_accuracy, 4),
            "kept": self.kept,
        }


def linear_layer(head: nn.Module) -> nn.Linear | None:
    """The head's one linear layer when the head is dropout + linear (hidden layers: None)."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[0] if len(linears) == 1 else None


def solved_weights(
    features: np.ndarray, labels: np.ndarray, classes: int, class_weights: np.ndarray | None, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """([classes, D] weights, [classes] bias) of a multinomial logistic regression; absent classes get -inf bias.

    Two classes present give scikit-learn's one weight row; it is split into the two logits' halves.
    """
    weight = None if class_weights is None else {int(c): float(class_weights[c]) for c in np.unique(labels)}
    model = LogisticRegression(C=strength, max_iter=500, class_weight=weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weights = np.zeros((classes, features.shape[1]), dtype=np.float32)
    bias = np.full(classes, -1e4, dtype=np.float32)  # a class no training image has: never predicted
    weights[model.classes_] = coef
    bias[model.classes_] = intercept
    return weights, bias


def training_rows(table: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every view's features [N * views, D] with its image's label, sampled to MOST_ROWS."""
    images, views, width = table.shape
    features = table.reshape(images * views, width).numpy()
    repeated = labels.repeat_interleave(views).numpy()
    if len(features) > MOST_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(features), size=MOST_ROWS, replace=False))
        features, repeated = features[keep], repeated[keep]
    return features, repeated


def fit_converged(
    head: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    val_loss,
    *,
    class_weights: torch.Tensor | None,
    seed: int,
) -> HeadFit | None:
    """Solve the head's linear layer on TRAIN (features [N, views, D], class indices) at each strength; keep
    the lowest VAL_LOSS(head) of those and the head as it is. None when the head has hidden layers, the
    targets are not class indices, or fewer than two classes train."""
    layer = linear_layer(head)
    table, labels = train
    if layer is None or labels.dim() != 1 or len(labels.unique()) < 2 or not len(val[0]):
        return None
    features, rows = training_rows(table, labels, seed)
    weights = None if class_weights is None else class_weights.numpy()
    head.eval()
    trained = {k: v.clone() for k, v in layer.state_dict().items()}
    trained_loss, trained_accuracy = val_loss(head)
    best = None
    for strength in STRENGTHS:
        coef, bias = solved_weights(features, rows, layer.out_features, weights, strength)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(coef))
            layer.bias.copy_(torch.from_numpy(bias))
        loss, accuracy = val_loss(head)
        if best is None or loss < best[1]:
            best = (strength, loss, accuracy, {k: v.clone() for k, v in layer.state_dict().items()})
    strength, loss, accuracy, state = best
    kept = loss < trained_loss
    layer.load_state_dict(state if kept else trained)
    return HeadFit(strength, loss, accuracy, trained_loss, trained_accuracy, kept)
