"""Check every image once before training: skip what cannot be decoded, warn about what looks off."""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from imagefit.data.decode import ImageFacts, check_image, extension_mismatch, read_bytes
from imagefit.data.shards import Sharded, check_out, write_shards
from imagefit.data.sources import CsvColumns, Sample, find_samples, locator_name
from imagefit.errors import UserError

SHOWN = 3  # how many example files a warning lists


@dataclass
class Inventory:
    """The usable samples of a dataset, and what was skipped or looked off, for the user."""

    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (locator, reason)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the data was read (a CSV's columns), said plainly
    unlabelled: list[str] = field(default_factory=list)  # test images without a class folder
    facts: dict[str, ImageFacts] = field(default_factory=dict)  # locator -> what the check found

    task: str = "single-label"  # or "multi-label": Sample.label then holds labels joined by "|"

    @property
    def classes(self) -> list[str]:
        from imagefit.tasks import task_for

        return task_for(self.task).classes_of([s.label for s in self.samples])

    @property
    def hashes(self) -> dict[str, str]:
        """SHA-256 of each checked file's bytes, by locator."""
        return {path: facts.sha256 for path, facts in self.facts.items()}

    def fingerprint(self) -> str:
        """A short hash of the sample list (locators, labels, splits), saved with a run."""
        digest = hashlib.sha256()
        for sample in sorted(self.samples, key=lambda s: s.path):
            digest.update(f"{sample.path}\t{sample.label}\t{sample.split}\n".encode())
        return digest.hexdigest()[:16]


def scan(data: Path, *, workers: int = 4, csv_columns: CsvColumns | None = None) -> Inventory:
    """Find DATA's samples, decode-check each, and validate the classes; raises UserError if unusable."""
    found = find_samples(data, csv_columns)
    samples, loose = found.samples, found.loose
    if not samples:
        raise UserError(
            f"{data}: no images in class folders. Put each class's images in a folder named after the class "
            "(DATA/cat/1.jpg, DATA/dog/2.jpg) or pass a CSV of path,label"
        )
    inventory = Inventory(
        samples=[], warnings=list(found.notes), notes=list(found.facts), unlabelled=found.unlabelled, task=found.task
    )
    if found.unlabelled:
        inventory.notes.append(
            f"{len(found.unlabelled)} unlabelled test images (files straight in test/): their predictions "
            "are written to the run folder's submission.csv"
        )
    if loose:
        inventory.warnings.append(listing(f"{len(loose)} files outside any class folder were ignored", loose))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check_image, [s.path for s in samples]))
    mismatched = []
    for sample, facts in zip(samples, results, strict=True):
        inventory.facts[sample.path] = facts
        if facts.reason:
            inventory.skipped.append((sample.path, facts.reason))
            continue
        inventory.samples.append(sample)
        expected = extension_mismatch(sample.path, facts.format)
        if expected:
            mismatched.append(f"{locator_name(sample.path)} is {facts.format}, not {expected}")
    if inventory.skipped:
        shown = [f"{locator_name(p)} ({why})" for p, why in inventory.skipped]
        inventory.warnings.append(listing(f"skipped {len(inventory.skipped)} unreadable files", shown))
    if mismatched:
        inventory.warnings.append(
            listing(f"{len(mismatched)} files have the wrong extension (read anyway)", mismatched)
        )
    _check_classes(data, inventory)
    return inventory


def content_hashes(locators: list[str], *, workers: int = 4) -> dict[str, str]:
    """SHA-256 of each file's bytes, by locator (as the scan computes them)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = pool.map(lambda locator: hashlib.sha256(read_bytes(locator)).hexdigest(), locators)
        return dict(zip(locators, digests, strict=True))


def listing(headline: str, items: list[str]) -> str:
    """`headline: a, b, c, +N more`, for one-line warnings."""
    more = f", +{len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return f"{headline}: {', '.join(str(i) for i in items[:SHOWN])}{more}"


def _check_classes(data: Path, inventory: Inventory) -> None:
    samples = inventory.samples
    if not samples:
        raise UserError(f"{data}: none of the {len(inventory.skipped)} files is a readable image. Check the files")
    classes = inventory.classes
    if len(classes) < 2:
        raise UserError(f"{data}: only one class ('{classes[0]}') found. A classifier needs at least two class folders")
    from imagefit.tasks import task_for

    task = task_for(inventory.task)

    def parts(sample: Sample) -> list[str]:
        return task.parts(sample.label)

    train_labels = {part for s in samples if s.split in ("train", "") for part in parts(s)}
    unseen = sorted({part for s in samples if s.split in ("val", "test") for part in parts(s)} - train_labels)
    if unseen:
        raise UserError(
            f"{data}: classes {', '.join(repr(c) for c in unseen)} are in val/test but not in train. "
            "Add training images for them or remove them from val/test"
        )
    counts = Counter(part for s in samples if s.split in ("train", "") for part in parts(s))
    tiny = sorted(label for label, n in counts.items() if n < 2)
    if tiny:
        raise UserError(
            f"{data}: classes {', '.join(repr(c) for c in tiny)} have fewer than 2 training images. "
            "Add images or remove those class folders"
        )


def shard(data: Path, out: str | Path, *, csv_columns: CsvColumns | None = None) -> tuple[Sharded, Inventory]:
    """`imagefit shard`: DATA's images that pass the decode checks, written as LitData shards in OUT."""
    check_out(out)  # before the decode checks, which take minutes on a large dataset
    inventory = scan(data, csv_columns=csv_columns)
    return write_shards(inventory.samples, inventory.task, out, source=str(data), read=read_bytes), inventory
