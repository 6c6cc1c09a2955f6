"""Dataset findings that need no model (torch-free): unreadable files, wrong extensions, exact duplicates,
leakage, conflicting labels, class imbalance and image statistics.

`imagefit train` runs the cheap ones before every run; `imagefit audit` adds the model-based ones.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagefit.data.inventory import Inventory
from imagefit.data.sources import Sample
from imagefit.tasks import task_for

# Most dangerous first: the order of audit.json, the summary table and the train warnings.
KINDS = (
    "leakage",
    "conflicting_label",
    "shift",
    "corrupt",
    "wrong_extension",
    "duplicate",
    "near_duplicate",
    "label_issue",
    "outlier",
    "imbalance",
    "stats",
)
SMALL_IMAGE = 32  # pixels on the shorter side below which an image is flagged in stats


@dataclass
class Finding:
    """One problem: its kind, the files involved, a score where it is ranked, and details."""

    kind: str
    paths: list[str]
    score: float | None = None
    detail: Any = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "paths": self.paths, "score": self.score, "detail": self.detail}


def _split(sample: Sample) -> str:
    return sample.split or "train"


def file_findings(inventory: Inventory) -> list[Finding]:
    """`corrupt` for every skipped file and `wrong_extension` for content that is not what the name says."""
    from imagefit.data.decode import extension_mismatch

    found = [Finding("corrupt", [path], detail={"reason": reason}) for path, reason in inventory.skipped]
    for sample in inventory.samples:
        facts = inventory.facts[sample.path]
        expected = extension_mismatch(sample.path, facts.format)
        if expected:
            found.append(Finding("wrong_extension", [sample.path], detail={"is": facts.format, "named": expected}))
    return found


def duplicate_findings(samples: list[Sample], hashes: dict[str, str]) -> list[Finding]:
    """Byte-identical groups: `duplicate`, plus `leakage` across splits and `conflicting_label` across classes."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[hashes[sample.path]].append(sample)
    found = []
    for digest, members in groups.items():
        if len(members) < 2:
            continue
        paths = [m.path for m in members]
        found.append(Finding("duplicate", paths, score=1.0, detail={"sha256": digest}))
        found += related_findings(members, similarity=1.0)
    return found


def related_findings(members: list[Sample], *, similarity: float) -> list[Finding]:
    """`leakage` when the same picture sits in train and in val/test; `conflicting_label` when under two classes."""
    found = []
    splits = {_split(m) for m in members}
    if "train" in splits and splits & {"val", "test"}:
        found.append(Finding("leakage", [m.path for m in members], score=similarity, detail={"splits": sorted(splits)}))
    labels = {m.label for m in members}
    if len(labels) > 1:
        found.append(
            Finding("conflicting_label", [m.path for m in members], score=similarity, detail={"labels": sorted(labels)})
        )
    return found


def imbalance_finding(samples: list[Sample], *, minimum: int = 10, task: str = "single-label") -> Finding:
    """Class counts of the training images, their imbalance ratio, classes below `minimum`, and train's answer.

    Multi-label: images a label, images with no label, and labels that always come together (the
    same images carry both: often one label under two names).
    """
    from imagefit.config import DataRecipe

    kind = task_for(task)
    labels = [s.label for s in samples if _split(s) == "train"]
    found = kind.imbalance(labels, kind.classes_of(labels), DataRecipe())
    return Finding(
        "imbalance",
        [],
        score=round(found.ratio, 3),
        detail={
            "counts": dict(sorted(found.counts.items())),
            "ratio": round(found.ratio, 3),
            "below_minimum": sorted(c for c, n in found.counts.items() if n < minimum),
            "train_will_use": found.handling,
            **found.extra,
        },
    )


def stats_finding(inventory: Inventory) -> Finding:
    """Sizes, aspect ratios, modes and formats per class; very small images listed."""
    per_class: dict[str, dict] = {}
    small = []
    task = task_for(inventory.task)
    for label in inventory.classes:
        facts = [inventory.facts[s.path] for s in inventory.samples if label in task.parts(s.label)]
        widths = np.array([f.width for f in facts])
        heights = np.array([f.height for f in facts])
        aspect = widths / heights
        per_class[label] = {
            "images": len(facts),
            "median_size": [int(np.median(widths)), int(np.median(heights))],
            "min_side": int(np.minimum(widths, heights).min()),
            "aspect_ratio_range": [
                round(float(aspect.min()), 3),
                round(float(aspect.max()), 3),
            ],
            "modes": dict(Counter(f.mode for f in facts)),
            "formats": dict(Counter(f.format for f in facts)),
        }
    for sample in inventory.samples:
        facts = inventory.facts[sample.path]
        if min(facts.width, facts.height) < SMALL_IMAGE:
            small.append(sample.path)
    return Finding(
        "stats", small, detail={"per_class": per_class, "small_images": len(small), "small_below_pixels": SMALL_IMAGE}
    )


def fast_findings(inventory: Inventory, samples: list[Sample]) -> list[Finding]:
    """Every check that needs no model: cheap enough to run before each training."""
    findings = file_findings(inventory) + duplicate_findings(samples, inventory.hashes)
    return findings + [imbalance_finding(samples, task=inventory.task)]
