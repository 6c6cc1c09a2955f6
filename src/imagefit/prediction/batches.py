"""Batch prediction: decode files, folders and zips in threads, cut test-time views, run any predictor.

Imports no torch, so an exported `.onnx` model predicts without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from imagefit.data.decode import UNREADABLE, open_image, unreadable_reason
from imagefit.data.preprocess import Preprocess, eval_array
from imagefit.data.sources import locator_name
from imagefit.errors import UserError
from imagefit.tasks import SINGLE, Task, task_for

# Test-time views in order of use: (shorter side before the centre crop, as a share of the model's
# resize size; horizontal flip). --tta-n N averages the first N.
TTA_VIEWS = ((1.0, False), (1.0, True), (1.15, False), (1.15, True), (0.875, False), (0.875, True))
DEFAULT_TTA_N = 2  # flips helped and crops hurt on clothing-small test (benchmarks/RESULTS.md)


class Predictor(Protocol):
    classes: list[str]
    preprocess: Preprocess
    tta_n: int  # test-time views a prediction averages unless told otherwise

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] for a float32 batch [N, 3, H, W]."""
        ...


@dataclass
class Predictions:
    """Class probabilities for every readable input, and the inputs that could not be read."""

    paths: list[str]
    probabilities: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unknown_scores: np.ndarray | None = None  # how unlike the training images (openset.py), when the run can say
    unknown: np.ndarray | None = None  # whether each score is past the run's threshold
    thresholds: np.ndarray | None = None  # a multi-label run's per-label thresholds (None: one label an image)
    task: Task = task_for(SINGLE)  # decides the labels and the CSV's columns
    adaptation: object = None  # what `predict --adapt` measured and changed (prediction.adapt.Adaptation)

    @property
    def labels(self) -> list[str]:
        """Each image's class, or for multi-label its labels above their thresholds, joined by '|'."""
        if not len(self.paths):
            return []
        return self.task.decide(self.probabilities, self.classes, self.thresholds)

    def top_k_lines(self, k: int = 3) -> list[str]:
        """`name: label 0.93, other 0.05, ...` for each image, as timm's and Ultralytics' predict print them."""
        lines = []
        for path, row in zip(self.paths, self.probabilities, strict=True):
            ranked = ", ".join(f"{self.classes[i]} {row[i]:.2f}" for i in np.argsort(-row)[:k])
            lines.append(f"{locator_name(path)}: {ranked}")
        return lines


def image_views(image: Image.Image, preprocess: Preprocess, count: int) -> list[np.ndarray]:
    """The first `count` test-time views (TTA_VIEWS) of an opened image, as model inputs [3, H, W]."""
    arrays = []
    for scale, flip in TTA_VIEWS[:count]:
        array = eval_array(image, preprocess, resize=max(preprocess.size, round(preprocess.resize_size * scale)))
        # The mirror of the crop (not the crop of the mirror): what the exported graph's flip computes.
        arrays.append(np.ascontiguousarray(array[:, :, ::-1]) if flip else array)
    return arrays


def _load(locator: str, preprocess: Preprocess, views: int) -> list[np.ndarray] | str:
    """The views of one input, or the reason it could not be read."""
    try:
        image = open_image(locator, min_size=decode_size(preprocess, views))
    except UNREADABLE as exc:
        return unreadable_reason(exc)
    return image_views(image, preprocess, views)


def decode_size(preprocess: Preprocess, views: int) -> int:
    """The shorter side a picture needs before its views are cut (zoomed views need more)."""
    return round(preprocess.resize_size * (1.15 if views > 2 else 1.0))


def map_batches(
    model_fn: Callable[[np.ndarray], np.ndarray],
    preprocess: Preprocess,
    locators: list[str],
    *,
    views: int = 1,
    batch_size: int = 32,
    threads: int = 0,
    progress: Callable[[int], None] | None = None,
    average: bool = True,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Run `model_fn` over every readable input: (paths, outputs, skipped).

    Outputs are averaged over the `views` of each input ([N, ...]), or kept apart ([N, views, ...]).

    Decoding runs in a thread pool and the next batch decodes while the model runs on this one.
    """
    paths, outputs, skipped = [], [], []
    per_batch = max(1, batch_size // views)  # one model call sees at most batch_size pictures, views included
    chunks = [locators[start : start + per_batch] for start in range(0, len(locators), per_batch)]
    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:

        def submit(chunk: list[str]):
            return [pool.submit(_load, loc, preprocess, views) for loc in chunk]

        pending = submit(chunks[0]) if chunks else []
        for index, chunk in enumerate(chunks):
            loaded = [future.result() for future in pending]
            pending = submit(chunks[index + 1]) if index + 1 < len(chunks) else []
            good = [(loc, arrays) for loc, arrays in zip(chunk, loaded, strict=True) if not isinstance(arrays, str)]
            skipped += [(loc, why) for loc, why in zip(chunk, loaded, strict=True) if isinstance(why, str)]
            if good:
                batch = np.stack([array for _, arrays in good for array in arrays])
                result = model_fn(batch)
                per_view = result.reshape(len(good), views, *result.shape[1:])
                outputs.append(per_view.mean(axis=1) if average else per_view)
                paths += [loc for loc, _ in good]
            if progress:
                progress(len(chunk))
    return paths, (np.concatenate(outputs) if outputs else np.zeros((0,))), skipped


def predict_with(
    predictor: Predictor, locators: list[str], *, tta_n: int | None = None, batch_size: int = 32, threads: int = 0
) -> Predictions:
    """Probabilities from an already loaded predictor, averaged over `tta_n` test-time views (default: its own)."""
    if hasattr(predictor, "members"):  # an ensemble: each member predicts, then the weighted average
        return _predict_ensemble(predictor, locators, tta_n=tta_n, batch_size=batch_size, threads=threads)
    tta_n = predictor.tta_n if tta_n is None else tta_n
    check_batch(tta_n, batch_size)
    index = getattr(predictor, "unknown", None)
    model_fn = predictor.with_embeddings if index is not None else predictor.probabilities
    paths, outputs, skipped = map_batches(
        model_fn, predictor.preprocess, locators, views=tta_n, batch_size=batch_size, threads=threads
    )
    count = len(predictor.classes)
    if not paths:
        outputs = np.zeros((0, count), dtype=np.float32)
    task = getattr(predictor, "task", task_for(SINGLE))
    thresholds = getattr(predictor, "thresholds", None)
    predictions = Predictions(
        paths, outputs[:, :count], list(predictor.classes), skipped, task=task, thresholds=thresholds
    )
    if index is not None:
        predictions.unknown_scores = index.scores(outputs[:, count:]) if paths else np.zeros(0, dtype=np.float32)
        predictions.unknown = index.flags(predictions.unknown_scores)
    return predictions


def check_batch(tta_n: int, batch_size: int) -> None:
    """UserError for a number of test-time views or a batch size no prediction can use."""
    if not 1 <= tta_n <= len(TTA_VIEWS):
        raise UserError(f"--tta-n must be between 1 and {len(TTA_VIEWS)}, got {tta_n}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")


def _predict_ensemble(
    ensemble, locators: list[str], *, tta_n: int | None, batch_size: int, threads: int
) -> Predictions:
    """Predictions of every member, averaged with the weights over the images all members could read."""
    results = [predict_with(m, locators, tta_n=tta_n, batch_size=batch_size, threads=threads) for m in ensemble.members]
    readable = set.intersection(*(set(r.paths) for r in results))
    paths = [p for p in results[0].paths if p in readable]
    total = np.zeros((len(paths), len(ensemble.classes)))
    for result, weight in zip(results, ensemble.weights, strict=True):
        rows = {p: row for p, row in zip(result.paths, result.probabilities, strict=True)}
        total += weight * np.stack([rows[p] for p in paths]) if paths else 0.0
    skipped = {p: why for r in results for p, why in r.skipped}
    return Predictions(paths, total.astype(np.float32), list(ensemble.classes), sorted(skipped.items()))
