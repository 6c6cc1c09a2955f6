"""`imagefit zero-shot` over files, folders and zips: predictions by class names alone (models.zeroshot scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagefit.data.decode import UNREADABLE, open_image, unreadable_reason
from imagefit.models.zeroshot import DEFAULT_MODEL, DEFAULT_WEIGHTS, load_zero_shot
from imagefit.prediction.batches import Predictions
from imagefit.prediction.inputs import collect_inputs


def zero_shot(
    images: list[str | Path],
    classes: list[str],
    *,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_WEIGHTS,
    batch_size: int = 32,
):
    """Predictions (as `imagefit predict` gives them) for every image under IMAGES, by class names alone."""
    scorer = load_zero_shot(classes, model=model, pretrained=pretrained)
    locators = collect_inputs(list(images))
    paths, rows, skipped = [], [], []
    for start in range(0, len(locators), batch_size):
        pictures, kept = [], []
        for locator in locators[start : start + batch_size]:
            try:
                pictures.append(open_image(locator))
                kept.append(locator)
            except UNREADABLE as exc:
                skipped.append((locator, unreadable_reason(exc)))
        if pictures:
            rows.append(scorer.probabilities(pictures))
            paths += kept
    probabilities = np.concatenate(rows) if rows else np.zeros((0, len(classes)), dtype=np.float32)
    return Predictions(paths, probabilities, classes, skipped)
