"""Logit adjustment for imbalanced classes: train on the plain loss, then shift the logits by the class priors.

Menon et al. (2021, "Long-tail learning via logit adjustment") show that subtracting tau * log(prior) from
the logits of a model trained with the plain loss moves its decisions from the majority classes toward the
rare ones (tau = 1 minimises the balanced error), and that this beats re-weighting the loss, which with
a 29x class weight made fine-tuning collapse onto the rarest class here (benchmarks/RESULTS.md, magnetic-tiles).
Kang et al. (2020) likewise found that the plain loss learns the best features on long-tailed data.

The strength tau is chosen on val from TAUS, for the best macro-F1 (each class's precision and recall count
alike; the smaller tau on a tie), and the shift is stored with the run and added to the head's last bias
when its model is loaded, so every path (PyTorch, ONNX, OpenVINO, serving, ensembles) predicts with it.
"""

from __future__ import annotations

import numpy as np

from imagefit.tasks.labels import view_probabilities

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def class_priors(labels: list[str], classes: list[str]) -> np.ndarray:
    """Each class's share of LABELS (a class missing from them counts as half an image, so its log is finite)."""
    counts = np.array([sum(label == name for label in labels) for name in classes], dtype=np.float64)
    counts = np.where(counts > 0, counts, 0.5)
    return counts / counts.sum()


def macro_f1(predicted: np.ndarray, targets: np.ndarray) -> float:
    """scikit-learn's macro-F1 over the classes in TARGETS or PREDICTED (an empty class scores 0, unwarned)."""
    from sklearn.metrics import f1_score

    return float(f1_score(targets, predicted, average="macro", zero_division=0))


def choose_adjustment(logits: np.ndarray, targets: np.ndarray, priors: np.ndarray, *, temperature: float = 1.0) -> dict:
    """The tau of TAUS whose shifted LOGITS ([N, C], or [N, views, C] decided as the predictor does: the mean of
    each view's softmax at TEMPERATURE) give the best val macro-F1, its per-class offsets (-tau * log prior, to
    add to the logits), and each tau's val macro-F1 and accuracy."""
    log_priors = np.log(priors)
    views = logits if logits.ndim == 3 else logits[:, None, :]
    tried = []
    for tau in TAUS:
        predicted = view_probabilities(views - tau * log_priors, temperature).argmax(axis=1)
        tried.append(
            {
                "tau": tau,
                "val_macro_f1": round(macro_f1(predicted, targets), 4),
                "val_accuracy": round(float((predicted == targets).mean()), 4),
            }
        )
    best = max(tried, key=lambda row: (row["val_macro_f1"], -row["tau"]))
    return {
        "tau": best["tau"],
        "offsets": [round(float(-best["tau"] * p), 6) for p in log_priors],
        "tried": tried,
    }


def describe(adjustment: dict) -> str:
    """One console line: the tau chosen and what it changed on val."""
    plain = adjustment["tried"][0]
    chosen = next(row for row in adjustment["tried"] if row["tau"] == adjustment["tau"])
    return (
        f"imbalance: logits shifted by {adjustment['tau']:g} x log class prior (chosen on val for macro-F1): "
        f"val macro-F1 {plain['val_macro_f1']:.4f} -> {chosen['val_macro_f1']:.4f}, accuracy "
        f"{plain['val_accuracy']:.4f} -> {chosen['val_accuracy']:.4f}"
    )
