"""`imagefit distill TEACHER --model M`: one smaller model trained on a run's or an ensemble's soft labels.

The teacher (a run folder or an ensemble folder) predicts its own training images and, when given, the
unlabelled ones, with its calibrated probabilities (its temperature fitted on val, its own views). The
student is a normal run of model M on the teacher's split (the same val and test images), from M's
pretrained weights, whose training targets are soft: for a labelled image TRUE_WEIGHT of its true class
plus (1 - TRUE_WEIGHT) of the teacher's probabilities (Hinton et al.'s two terms, at the teacher's
calibrated temperature), for an unlabelled image the teacher's probabilities alone. Cross-entropy against
a probability row equals the KL divergence to it up to a constant, so this is KL to the teacher plus the
true labels, weighted 0.5 / 0.5. The student records them in pseudo-labels.csv and its teacher in
config.json (`distilled_from`); its report shows both on the same val images.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from imagefit import runs
from imagefit.config import parse_duration
from imagefit.data import Sample, write_split
from imagefit.errors import UserError
from imagefit.training.plan import PSEUDO_LABELS, option_key
from imagefit.training.pseudo import write_pseudo_labels

TRUE_WEIGHT = 0.5


def teacher_split(teacher: Path) -> tuple[list[Sample], list[str]]:
    """The teacher's split and classes (an ensemble's own split.csv, or a run's)."""
    from imagefit.prediction.ensembles import is_ensemble, load_ensemble

    if is_ensemble(teacher):
        ensemble = load_ensemble(teacher)
        return ensemble.split(), ensemble.classes
    run = runs.load_run(runs.check_run_folder(teacher))
    if not run.task.offers("pseudo-labels"):
        raise UserError(f"{teacher}: {run.task.unsupported['pseudo-labels']}")
    return run.split(), run.classes


def soft_targets(
    probabilities: np.ndarray, paths: list[str], labels: dict[str, str], classes: list[str]
) -> dict[str, np.ndarray]:
    """Each image's training target: TRUE_WEIGHT of its true class (when LABELS has it) plus the rest of the
    teacher's probabilities; the teacher's probabilities alone for an unlabelled image."""
    eye = np.eye(len(classes), dtype=np.float32)
    index = {name: i for i, name in enumerate(classes)}
    targets = {}
    for path, row in zip(paths, np.asarray(probabilities, dtype=np.float32), strict=True):
        label = labels.get(path)
        targets[path] = row if label is None else TRUE_WEIGHT * eye[index[label]] + (1 - TRUE_WEIGHT) * row
    return targets


def distill(
    teacher: str | Path,
    *,
    model: str,
    unlabelled: str | Path | None = None,
    out: str | Path | None = None,
    train,
    console: Console,
    report: bool = True,
    **overrides,
) -> runs.Run:
    """Train MODEL on TEACHER's soft labels over its training images (and UNLABELLED); returns the student run.

    TRAIN is `imagefit.training.pipeline.train`.
    """
    from imagefit.prediction.loading import predict

    started = time.perf_counter()
    teacher = Path(teacher)
    samples, classes = teacher_split(teacher)
    train_samples = [s for s in samples if s.split == "train"]
    labels = {s.path: s.label for s in train_samples}
    inputs = [s.path for s in train_samples] + ([str(unlabelled)] if unlabelled else [])
    predictions = predict(teacher, inputs)
    known = {s.path for s in samples}
    extra = {p for p in predictions.paths if p not in known}  # unlabelled images (split images left out)
    kept = [i for i, p in enumerate(predictions.paths) if p in labels or p in extra]
    paths = [predictions.paths[i] for i in kept]
    targets = soft_targets(predictions.probabilities[kept], paths, labels, classes)
    console.print(
        f"distill: {len(labels)} training images ({TRUE_WEIGHT:g} true label + {1 - TRUE_WEIGHT:g} teacher) and "
        f"{len(extra)} unlabelled images (teacher alone) for {model}, teacher {teacher.name}",
        highlight=False,
    )
    rows = [(p, labels.get(p) or classes[int(targets[p].argmax())], float(targets[p].max())) for p in paths]
    merged = list(samples) + [Sample(p, label, "train") for p, label, _ in rows if p not in labels]
    target = Path(out) if out else teacher.with_name(f"{teacher.name}-{model}")
    overrides = time_left(overrides, time.perf_counter() - started, console)
    with tempfile.TemporaryDirectory() as scratch:
        manifest, soft = Path(scratch) / "distill.csv", Path(scratch) / "pseudo-labels.csv"
        write_split(manifest, merged)
        write_pseudo_labels(soft, rows, 0, targets, classes)
        carried = {"distilled_from": str(teacher.resolve()), PSEUDO_LABELS: str(soft)}
        return train(
            manifest, out=target, console=console, report=report, checks=False, carried=carried, model=model,
            unlabelled="none", **overrides,
        )  # fmt: skip


STUDENT_FLOOR = 60.0  # seconds: a student whose teacher took the whole limit still gets this much


def time_left(overrides: dict, spent: float, console: Console) -> dict:
    """OVERRIDES with `--time-limit` (if given) less SPENT, the seconds the teacher's labelling took: the limit
    bounds the whole command, as it does `imagefit train` (said in one line)."""
    key = option_key(overrides, "time_limit")
    limit = parse_duration(str(overrides[key])) if key else 0.0
    if not limit:
        return overrides
    left = max(limit - spent, STUDENT_FLOOR)
    said = f"time limit: the teacher's labels took {spent:.0f}s, {left:.0f}s left for the student"
    console.print(said, highlight=False)
    return {**overrides, key: f"{left:.0f}s"}
