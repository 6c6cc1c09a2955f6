"""Temperature scaling (Guo et al., 2017): one scalar fitted on validation logits so confidences mean what they say.

NumPy and SciPy only. Logits come as [N, views, C]: the probabilities of an image are the mean of
its views' softmax(logits / T), so test-time views and temperature combine the same way
everywhere (evaluation, prediction, the exported ONNX graph).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from imagefit.tasks.labels import view_probabilities

LOWEST, HIGHEST = 0.05, 20.0  # temperatures searched (log scale)


def log_loss(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    chosen = probabilities[np.arange(len(targets)), np.asarray(targets)]
    return float(-np.log(np.clip(chosen, 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises the validation log loss of `view_probabilities(logits, T)`."""
    targets = np.asarray(targets)
    if len(targets) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: log_loss(view_probabilities(logits, float(np.exp(log_t))), targets),
        bounds=(np.log(LOWEST), np.log(HIGHEST)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))
