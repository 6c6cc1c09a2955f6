"""Temperature scaling (Guo et al., 2017): one scalar fitted on validation logits so confidences mean what they say.

NumPy and SciPy only. Logits come as [N, views, C]: the probabilities of an image are the mean of
its views' softmax(logits / T), so test-time views and temperature combine the same way
everywhere (evaluation, prediction, the exported ONNX graph).

A temperature cannot run away: with fewer than MIN_MISTAKES wrong answers on val, the log loss keeps
falling as T shrinks (T -> 0 makes every answer certain), so T stays 1; otherwise it is searched within
[LOWEST, HIGHEST]. The val calibration error measured on the images T was fitted on flatters it:
`cross_fitted_probabilities` fits T on one half of val and applies it to the other, and the reverse.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from imagefit.tasks.labels import view_probabilities

LOWEST, HIGHEST = 0.1, 10.0  # temperatures searched (log scale)
MIN_MISTAKES = 3  # wrong answers on val below which a temperature cannot be estimated (T = 1)


def log_loss(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    chosen = probabilities[np.arange(len(targets)), np.asarray(targets)]
    return float(-np.log(np.clip(chosen, 1e-12, 1.0)).mean())


def mistakes(probabilities: np.ndarray, targets: np.ndarray) -> int:
    """Wrong answers of PROBABILITIES [N, C]: what MIN_MISTAKES counts (on the logits before scaling)."""
    return int((probabilities.argmax(axis=1) != np.asarray(targets)).sum())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, *, min_mistakes: int = MIN_MISTAKES) -> float:
    """The temperature that minimises the validation log loss of `view_probabilities(logits, T)`, within
    [LOWEST, HIGHEST]; 1 when val holds fewer than MIN_MISTAKES wrong answers (or MIN_MISTAKES given)."""
    targets = np.asarray(targets)
    if len(targets) == 0:
        return 1.0
    if mistakes(view_probabilities(logits, 1.0), targets) < min_mistakes:
        return 1.0
    result = minimize_scalar(
        lambda log_t: log_loss(view_probabilities(logits, float(np.exp(log_t))), targets),
        bounds=(np.log(LOWEST), np.log(HIGHEST)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def cross_fitted_probabilities(logits: np.ndarray, targets: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Each image's probabilities with a temperature fitted on the other half of the images (two random halves),
    so a calibration error measured on them is out of sample."""
    targets = np.asarray(targets)
    order = np.random.default_rng(seed).permutation(len(targets))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    probabilities = np.zeros((len(targets), logits.shape[-1]))
    for fitted, applied in (halves, halves[::-1]):
        if len(applied):
            temperature = fit_temperature(logits[fitted], targets[fitted]) if len(fitted) else 1.0
            probabilities[applied] = view_probabilities(logits[applied], temperature)
    return probabilities
