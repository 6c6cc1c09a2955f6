"""Stratified, seeded train/val/test splits, and the split.csv that pins one to a run."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from imagefit.data.sources import Sample
from imagefit.errors import UserError
from imagefit.files import write_rows


def assign_splits(
    samples: list[Sample], *, val_split: float, test_split: float, seed: int, task: str = "single-label"
) -> list[Sample]:
    """Every sample with a split: the data's own splits are kept, missing val/test are carved from train.

    Each class gives round(n * share) images, at least one, and always keeps one for training.
    (scikit-learn's stratified splitter refuses a split smaller than the number of classes, which
    small datasets hit.)
    """
    present = {s.split for s in samples}
    carve = {"val": val_split if "val" not in present else 0.0, "test": test_split if "test" not in present else 0.0}
    pool = [s for s in samples if s.split in ("", "train")]
    kept = [s for s in samples if s.split in ("val", "test")]
    if task == "multi-label":
        return _multilabel_splits(pool, kept, carve, seed)
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for sample in sorted(pool, key=lambda s: s.path):
        by_class[sample.label].append(sample)
    rng = np.random.default_rng(seed)
    result = list(kept)
    for label in sorted(by_class):
        members = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        for split_name in ("val", "test"):
            take = _share(len(members), carve[split_name])
            result += [Sample(s.path, s.label, split_name) for s in members[:take]]
            members = members[take:]
        result += [Sample(s.path, s.label, "train") for s in members]
    if not any(s.split == "val" for s in result):
        raise UserError("no validation images: pass data with a val/ folder or set --val-split above 0")
    return sorted(result, key=lambda s: (s.split, s.label, s.path))


def _multilabel_splits(pool: list[Sample], kept: list[Sample], carve: dict, seed: int) -> list[Sample]:
    """Iterative stratification (Sechidis et al. 2011, the iterative-stratification package): every label's
    share of each split close to the split's share, which a per-class carve cannot give several labels at once."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    from imagefit.tasks import classes_of, targets

    pool = sorted(pool, key=lambda s: s.path)
    classes = classes_of([s.label for s in pool], "multi-label")
    result = list(kept)
    rest = pool
    for split_name in ("val", "test"):
        share = carve[split_name]
        if share <= 0 or len(rest) < 4:
            continue
        rows = targets([s.label for s in rest], classes, "multi-label")
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        keep, take = next(splitter.split(np.zeros(len(rest)), rows))
        result += [Sample(rest[i].path, rest[i].label, split_name) for i in sorted(take)]
        rest = [rest[i] for i in sorted(keep)]
    result += [Sample(s.path, s.label, "train") for s in rest]
    if not any(s.split == "val" for s in result):
        raise UserError("no validation images: pass data with a val/ folder or set --val-split above 0")
    return sorted(result, key=lambda s: (s.split, s.label, s.path))


def _share(available: int, fraction: float) -> int:
    if fraction <= 0 or available < 2:
        return 0
    return min(max(1, round(available * fraction)), available - 1)


def write_split(path: Path, samples: list[Sample]) -> None:
    """Write samples as a path,label,split CSV (atomically)."""
    write_rows(path, ["path", "label", "split"], [[s.path, s.label, s.split] for s in samples])


def read_split(path: Path) -> list[Sample]:
    """The samples of a split.csv written by `write_split`."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [Sample(row["path"], row["label"], row["split"]) for row in csv.DictReader(handle)]
