"""Which unlabelled images join training, and with which label (issue 29 item 1): pure functions.

The confidence threshold is chosen on val, from the run's own calibrated predictions there: the lowest
threshold at which the val predictions at or above it are right at least halfway from the run's val
accuracy to 1 (`precision_goal`): the accepted pseudo-labels then carry at most half the run's error rate,
measured on images it never trained on. At least MIN_VAL_ABOVE val images must pass it, else nothing is
accepted (too few to measure a precision on).

Classes stay balanced: no class takes more pseudo-labels than its share of the labelled training images
allows of all those that passed (`class_caps`, rounded up); a class over its cap keeps its most confident.

Multi-label runs (`label_thresholds`, `choose_labels`): the same rule a label, on that label's decisions (the
probability of the decision taken against the run's decision threshold for it); an image passes when every
label's decision does, and each label (and "no label") is capped by its share of the labelled images.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit.tasks.labels import joined, labels_of

MIN_VAL_ABOVE = 10
# A student is kept unless its val log loss is above its teacher's by more than this many standard errors of
# the paired per-image difference: on a small val set (46 images at 10 % of clothing-small's labels) the
# difference is mostly noise, and a student 7 test points better was rejected on a plain comparison.
NOISE_SE = 2.0
NEGLIGIBLE = 0.005  # nats an image: a smaller difference is none (a val set without mistakes has no noise)
COLUMNS = ["path", "label", "confidence", "round"]
NONE = "(none)"  # multi-label: the images that carry none of the labels, capped like a label


def precision_goal(accuracy: float) -> float:
    """Val precision the accepted predictions must reach: halfway from the run's val accuracy to 1."""
    return (1.0 + accuracy) / 2.0


def val_threshold(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(threshold, goal): the lowest confidence whose val predictions at or above it reach the precision goal.

    The threshold is above 1 (nothing passes) when no set of at least MIN_VAL_ABOVE val images reaches it.
    """
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    goal = precision_goal(float(correct.mean())) if len(correct) else 1.0
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    # A cut must fall between different confidences: ties pass or fail together.
    last_of_tie = np.append(ranked[1:] < ranked[:-1], True)
    ok = np.nonzero((precision >= goal) & last_of_tie & (np.arange(1, len(order) + 1) >= MIN_VAL_ABOVE))[0]
    if not ok.size:
        return math.inf, goal
    return float(ranked[ok.max()]), goal


def class_caps(train_labels: list[str], classes: list[str], passed: int) -> dict[str, int]:
    """Most pseudo-labels each class may take: its share of the labelled training images times those that passed."""
    counts = Counter(train_labels)
    total = max(1, sum(counts[c] for c in classes))
    return {c: math.ceil(passed * counts[c] / total) for c in classes}


@dataclass(frozen=True)
class Chosen:
    """The unlabelled images that join training, and what was decided on the way."""

    rows: list[tuple[str, str, float]]  # path, label, confidence
    soft: dict[str, np.ndarray]  # each chosen image's calibrated probabilities: the soft label it trains with
    threshold: float
    goal: float
    passed: int  # images at or above the threshold, before the caps
    caps: dict[str, int]
    per_label: dict[str, float] | None = None  # multi-label: each label's own threshold (choose_labels)

    def per_class(self) -> Counter:
        """Pseudo-labels a class (multi-label: images a label is positive in, NONE those with no label)."""
        if self.per_label is None:
            return Counter(label for _, label, _ in self.rows)
        return Counter(part for _, label, _ in self.rows for part in (labels_of(label) or [NONE]))


def choose(
    paths: list[str],
    probabilities: np.ndarray,
    classes: list[str],
    *,
    threshold: float,
    goal: float,
    train_labels: list[str],
) -> Chosen:
    """The images whose top probability reaches THRESHOLD, each class cut to its cap (most confident kept)."""
    probabilities = np.asarray(probabilities, dtype=float).reshape(len(paths), len(classes))
    top = probabilities.argmax(axis=1) if len(paths) else np.zeros(0, dtype=int)
    confidence = probabilities.max(axis=1) if len(paths) else np.zeros(0)
    passing = np.nonzero(confidence >= threshold)[0]
    caps = class_caps(train_labels, classes, len(passing))
    rows: list[tuple[str, str, float]] = []
    for index, name in enumerate(classes):
        mine = passing[top[passing] == index]
        mine = mine[np.argsort(-confidence[mine], kind="stable")][: caps[name]]
        rows += [(paths[i], name, float(confidence[i])) for i in mine]
    rows.sort(key=lambda row: row[0])
    index = {p: i for i, p in enumerate(paths)}
    soft = {p: probabilities[index[p]].astype(np.float32) for p, _, _ in rows}
    return Chosen(rows, soft, threshold, goal, len(passing), caps)


def label_decisions(probabilities: np.ndarray, decision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label: each label's decision [N, C] (probability at or above its decision threshold) and how sure it
    is (the probability of the decision taken: p for a positive, 1 - p for a negative)."""
    positive = probabilities >= np.asarray(decision)[None, :]
    return positive, np.where(positive, probabilities, 1.0 - probabilities)


def label_thresholds(probabilities: np.ndarray, truth: np.ndarray, decision: np.ndarray) -> tuple[np.ndarray, ...]:
    """Multi-label: per label, (threshold, goal) as val_threshold chooses them from that label's val decisions
    (TRUTH: the multi-hot rows [N, C])."""
    positive, sure = label_decisions(np.asarray(probabilities, dtype=float), decision)
    right = positive == np.asarray(truth).astype(bool)
    pairs = [val_threshold(sure[:, j], right[:, j]) for j in range(sure.shape[1])]
    return np.array([t for t, _ in pairs]), np.array([g for _, g in pairs])


def choose_labels(
    paths: list[str],
    probabilities: np.ndarray,
    classes: list[str],
    *,
    decision: np.ndarray,
    thresholds: np.ndarray,
    goals: np.ndarray,
    train_rows: np.ndarray,
) -> Chosen:
    """Multi-label: the images each of whose labels' decisions reaches that label's threshold; no label positive in
    more of them than its share of the labelled training images allows (nor more with no label than those
    images' share), the surest first (by their least sure label). The soft label is the probability row."""
    probabilities = np.asarray(probabilities, dtype=float).reshape(len(paths), len(classes))
    positive, sure = label_decisions(probabilities, decision)
    passing = np.nonzero((sure >= np.asarray(thresholds)[None, :]).all(axis=1))[0] if len(paths) else []
    train_rows = np.asarray(train_rows, dtype=bool)
    shares = dict(zip([*classes, NONE], [*train_rows.mean(axis=0), (~train_rows.any(axis=1)).mean()], strict=True))
    caps = {name: math.ceil(len(passing) * float(share)) for name, share in shares.items()}
    least = sure.min(axis=1) if len(paths) else np.zeros(0)
    taken: Counter = Counter()
    rows: list[tuple[str, str, float]] = []
    for i in sorted(passing, key=lambda i: (-least[i], i)):
        names = [classes[j] for j in np.flatnonzero(positive[i])]
        if all(taken[name] < caps[name] for name in names or [NONE]):
            taken.update(names or [NONE])
            rows.append((paths[i], joined(names), float(least[i])))
    rows.sort(key=lambda row: row[0])
    index = {p: i for i, p in enumerate(paths)}
    soft = {p: probabilities[index[p]].astype(np.float32) for p, _, _ in rows}
    per_label = dict(zip(classes, map(float, thresholds), strict=True))
    return Chosen(rows, soft, float(np.max(thresholds)), float(np.min(goals)), len(passing), caps, per_label)


def write_pseudo_labels(
    path: Path, rows: list[tuple[str, str, float]], round_number: int, soft: dict[str, np.ndarray], classes: list[str]
) -> None:
    """pseudo-labels.csv: each unlabelled image, its label, confidence and round, and the soft label it trains
    with (one probability column a class)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS + classes)
        for p, label, confidence in rows:
            writer.writerow([p, label, f"{confidence:.6f}", round_number, *(f"{v:.6f}" for v in soft[p])])


def read_soft_labels(path: Path, classes: list[str]) -> dict[str, np.ndarray]:
    """The soft label of each image in a pseudo-labels.csv ({} when it has no probability columns)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(c not in rows[0] for c in classes):
        return {}
    return {r["path"]: np.array([float(r[c]) for c in classes], dtype=np.float32) for r in rows}


@dataclass(frozen=True)
class Verdict:
    """A student against its teacher on the same val images: mean per-image log loss difference and its noise."""

    difference: float  # student minus teacher, mean over val images
    noise: float  # NOISE_SE standard errors of that mean
    count: int

    @property
    def kept(self) -> bool:
        return self.difference <= max(self.noise, NEGLIGIBLE)


def paired_verdict(teacher_losses: np.ndarray, student_losses: np.ndarray) -> Verdict:
    """Whether a student is worse than its teacher beyond noise, from each val image's log loss under both."""
    difference = np.asarray(student_losses, dtype=float) - np.asarray(teacher_losses, dtype=float)
    if len(difference) < 2:
        return Verdict(float(difference.mean()) if len(difference) else 0.0, 0.0, len(difference))
    error = difference.std(ddof=1) / np.sqrt(len(difference))
    return Verdict(float(difference.mean()), float(NOISE_SE * error), len(difference))
