"""Stratified, seeded train/val/test splits, and the split.csv that pins one to a run."""

from __future__ import annotations

import csv
from pathlib import Path

from imagefit.data.sources import Sample
from imagefit.errors import UserError
from imagefit.files import write_rows
from imagefit.tasks import task_for


def assign_splits(
    samples: list[Sample], *, val_split: float, test_split: float, seed: int, task: str = "single-label"
) -> list[Sample]:
    """Every sample with a split: the data's own splits are kept, missing val/test are carved from train.

    The task stratifies the carve: by class (single-label) or by every label at once (multi-label).
    """
    present = {s.split for s in samples}
    carve = {"val": val_split if "val" not in present else 0.0, "test": test_split if "test" not in present else 0.0}
    pool = [s for s in samples if s.split in ("", "train")]
    kept = [s for s in samples if s.split in ("val", "test")]
    pool = sorted(pool, key=lambda s: s.path)
    names = task_for(task).assign_splits([s.label for s in pool], carve, seed)
    result = kept + [Sample(s.path, s.label, name) for s, name in zip(pool, names, strict=True)]
    if not any(s.split == "val" for s in result):
        raise UserError("no validation images: pass data with a val/ folder or set --val-split above 0")
    return sorted(result, key=lambda s: (s.split, s.label, s.path))


def write_split(path: Path, samples: list[Sample]) -> None:
    """Write samples as a path,label,split CSV (atomically)."""
    write_rows(path, ["path", "label", "split"], [[s.path, s.label, s.split] for s in samples])


def read_split(path: Path) -> list[Sample]:
    """The samples of a split.csv written by `write_split`."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [Sample(row["path"], row["label"], row["split"]) for row in csv.DictReader(handle)]
