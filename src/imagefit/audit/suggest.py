"""`imagefit suggest RUN POOL --n N`: the unlabelled images whose labels would teach the run most.

The run predicts every image of the pool once (its calibrated probabilities and backbone embedding, one
view). Images already in the run's split.csv, and near duplicates of them (perceptual hashes at most
STRICT_PHASH bits apart, as the audit finds copies), are skipped; images the run flags as unknown are
listed apart (they may be a class the run does not know). Of the rest, `selection.choose` picks N:
uncertain, one typical image of each kind among them; each row's reason gives its margin and, when the run
keeps its training embeddings (unknown index), its distance to the nearest training image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagefit import runs
from imagefit.audit.phash import nearest_distances, perceptual_hashes
from imagefit.audit.selection import choose
from imagefit.audit.similarity import STRICT_PHASH
from imagefit.errors import UserError
from imagefit.files import write_rows
from imagefit.prediction.batches import map_batches
from imagefit.prediction.inputs import collect_inputs
from imagefit.prediction.loading import load_predictor

COLUMNS = ["path", "suggested_label", "confidence", "reason"]


@dataclass
class Suggestions:
    """The rows to label (most useful first), the unknown images listed apart, and what was skipped and why."""

    rows: list[list]
    unknown: list[list]
    skipped: dict[str, int] = field(default_factory=dict)
    covered: bool = False  # distances were measured against the run's training embeddings

    def lines(self, out: Path) -> list[str]:
        said = [f"{len(self.rows)} images to label next written to {out} (most useful first)"]
        if self.unknown:
            said.append(
                f"{len(self.unknown)} images unlike every class listed apart in {unknown_path(out)}: a new class?"
            )
        skipped = ", ".join(f"{count} {why}" for why, count in self.skipped.items() if count)
        if skipped:
            said.append(f"skipped: {skipped}")
        if not self.covered:
            said.append(
                "the run keeps no training embeddings (unknown index): no distance to the training images is given"
            )
        return said

    def write(self, out: Path) -> None:
        write_rows(out, COLUMNS, self.rows)
        if self.unknown:
            write_rows(unknown_path(out), COLUMNS, self.unknown)


def unknown_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}-unknown{out.suffix or '.csv'}")


def suggest(run: str | Path, pool: list[str | Path], *, n: int = 100, batch_size: int = 32) -> Suggestions:
    """Which N images of POOL (files, folders, zips) to label next for RUN (a run folder)."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    run_path = runs.check_run_folder(run)
    predictor = load_predictor(run_path)
    if not hasattr(predictor, "run_path"):
        raise UserError(f"{run_path}: suggest needs a run folder (an ensemble has no single embedding space)")
    labelled = [s.path for s in runs.load_run(run_path).split()]
    known = set(labelled)
    found = collect_inputs(list(pool))
    locators = [loc for loc in found if loc not in known]
    skipped = {"already labelled": len(found) - len(locators)}
    locators, skipped["near duplicates of labelled images"] = _without_near_duplicates(locators, labelled)
    paths, outputs, unreadable = map_batches(
        predictor.with_embeddings, predictor.preprocess, locators, batch_size=batch_size
    )
    skipped["unreadable"] = len(unreadable)
    if not paths:
        raise UserError(f"no image left to suggest in {', '.join(str(p) for p in pool)} ({_said(skipped)})")
    count = len(predictor.classes)
    probabilities, embeddings = outputs[:, :count], outputs[:, count:]
    index = predictor.unknown
    scores = index.scores(embeddings) if index is not None else np.zeros(len(paths))
    flagged = index.flags(scores) if index is not None else np.zeros(len(paths), bool)
    thresholds = predictor.thresholds  # a multi-label run's per-label thresholds; None for one label an image
    labels = predictor.task.decide(probabilities, predictor.classes, thresholds)
    covered = index.embeddings if index is not None else None
    choice = choose(probabilities, embeddings, n, eligible=~flagged, covered=covered, thresholds=thresholds)
    rows = [
        [
            paths[i],
            labels[i],
            f"{probabilities[i].max():.4f}",
            _reason(probabilities[i], predictor.classes, m, d, covered),
        ]
        for i, m, d in zip(choice.indices, choice.margins, choice.distances, strict=True)
    ]
    unknown = [
        [
            paths[i],
            labels[i],
            f"{probabilities[i].max():.4f}",
            f"unknown score {scores[i]:.3f} over {index.threshold:.3f}",
        ]
        for i in np.flatnonzero(flagged)
    ]
    return Suggestions(rows, unknown, skipped, covered=covered is not None)


def _said(skipped: dict[str, int]) -> str:
    return ", ".join(f"{count} {why}" for why, count in skipped.items() if count) or "none readable"


def _without_near_duplicates(locators: list[str], labelled: list[str]) -> tuple[list[str], int]:
    """LOCATORS less those whose perceptual hash is within STRICT_PHASH bits of a labelled image's; how many."""
    if not locators or not labelled:
        return locators, 0
    pool_hashes, pool_valid = perceptual_hashes(locators)
    known_hashes, known_valid = perceptual_hashes(labelled)
    near = pool_valid & (nearest_distances(pool_hashes, known_hashes[known_valid]) <= STRICT_PHASH)
    return [loc for loc, dup in zip(locators, near, strict=True) if not dup], int(near.sum())


def _reason(row: np.ndarray, classes: list[str], margin: float, distance: float, covered) -> str:
    first, second = np.argsort(-row)[:2] if len(row) > 1 else (0, 0)
    said = f"margin {margin:.3f} between {classes[first]} and {classes[second]}"
    if covered is not None:
        said += f"; cosine distance {distance:.3f} to the nearest training image"
    return said
