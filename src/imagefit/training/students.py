"""`imagefit train DATA --unlabelled DIR`: rounds of students trained on the run's confident pseudo-labels.

After the run, its kept model labels the unlabelled images; those that pass the threshold chosen on val,
each class within its cap (training.pseudo), join the training images with their soft label (the run's
calibrated probabilities: cross-entropy against them, MixUp/CutMix left out for those batches), and a
student is fine-tuned from the run's weights with stronger augmentation (RandAugment, Noisy Student's
noise; the run's own choice stays if it made one) on the same split, so that its val and test figures
compare with the run's. A student is kept unless its val log loss (each run's val probabilities rescaled by
the temperature that fits them best: val_losses) is above its teacher's beyond noise (pseudo.paired_verdict);
it then labels the images again for the next round, at most MAX_ROUNDS. Each student is a normal run folder
(RUN-student1, ...) that records its pseudo-labels
(pseudo-labels.csv) and its teacher (config.json `student_of`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console

from imagefit import runs
from imagefit.data import Sample, write_split
from imagefit.errors import TrainingInterrupted
from imagefit.evaluation.calibration import fit_temperature
from imagefit.evaluation.evaluator import read_predictions
from imagefit.tasks import SINGLE, Task, task_for
from imagefit.tasks.labels import view_probabilities
from imagefit.training import chain
from imagefit.training.chain import asked
from imagefit.training.plan import PSEUDO_LABELS
from imagefit.training.pseudo import (
    NOISE_SE,
    Chosen,
    choose,
    choose_labels,
    label_thresholds,
    paired_verdict,
    val_threshold,
    write_pseudo_labels,
)
from imagefit.training.refit import recipe_overrides
from imagefit.training.round_time import RoundClock

MAX_ROUNDS = 3
STUDENT_AUGMENT = "randaugment"
# Recipe fields a student sets itself rather than taking from its teacher.
NOT_CARRIED = ("time_limit", "refit", "init_weights", "lr_find")


def unlabelled_inputs(run: runs.Run, unlabelled: str | Path | None, console: Console) -> list[str]:
    """The images to pseudo-label: UNLABELLED, else the competition layout's test/ (said), else none."""
    if unlabelled is not None:
        return [str(unlabelled)] if asked(unlabelled) else []
    from imagefit.training.finish import unlabelled_paths

    paths = unlabelled_paths(runs.RunFiles(run.path))
    if paths:
        console.print(
            f"unlabelled: the {len(paths)} unlabelled test images of the data join training as pseudo-labels "
            "(--unlabelled none turns this off)",
            highlight=False,
        )
    return paths


SINGLE_LABEL = task_for(SINGLE)


def val_rows(run: runs.Run) -> list[dict]:
    """The run's val predictions (predictions-val.csv: truth, prediction, calibrated probabilities), by path."""
    rows, _ = read_predictions(runs.RunFiles(run.path).predictions("val"))
    return sorted(rows, key=lambda r: r["path"])


def val_probabilities(rows: list[dict], classes: list[str]) -> np.ndarray:
    """[N, C]: the probability columns of val_rows, in CLASSES' order."""
    return np.array([[float(r[c]) for c in classes] for r in rows])


def val_losses(rows: list[dict], classes: list[str], task: Task = SINGLE_LABEL) -> np.ndarray:
    """Each val image's log loss under the probabilities of val_rows rescaled as well as val allows.

    A run keeps T = 1 when val holds fewer than calibration.MIN_MISTAKES wrong answers, as a label-scarce val
    set (40-50 images) often does; then one run can be sharper than another for no reason of accuracy (a student
    fine-tuned on soft pseudo-labels is less sure of its right answers: on digits with 20 % of its labels, a
    student that gained 1.1 test points lost 0.33 nats an image of val log loss at T = 1). So each run's
    probabilities are first rescaled by the one temperature (on their logarithms, within calibration's range,
    with no floor on mistakes) that fits its own val images best, and the runs are compared rescaled.
    Multi-label runs (no temperature): each image's binary cross-entropy, summed over the labels.
    """
    probabilities = val_probabilities(rows, classes)
    if task.chosen_on_val == "thresholds":  # a sigmoid a label, no temperature: binary cross-entropy summed
        truth = task.targets([r["true"] for r in rows], classes)
        clipped = np.clip(probabilities, 1e-12, 1.0 - 1e-12)
        return -(truth * np.log(clipped) + (1.0 - truth) * np.log(1.0 - clipped)).sum(axis=1)
    targets = np.array([classes.index(r["true"]) for r in rows])
    logs = np.log(np.clip(probabilities, 1e-12, 1.0))[:, None, :]
    rescaled = view_probabilities(logs, fit_temperature(logs, targets, min_mistakes=0))
    return -np.log(np.clip(rescaled[np.arange(len(targets)), targets], 1e-12, 1.0))


def pseudo_label(teacher: runs.Run, inputs: list[str], labelled: list[Sample], val: list[dict]) -> tuple[Chosen, int]:
    """The teacher's pseudo-labels for INPUTS (the LABELLED images left out), the threshold from its VAL rows;
    and how many were predicted. A multi-label teacher's: a threshold a label (pseudo.choose_labels)."""
    from imagefit.prediction.loading import predict

    predictions = predict(teacher.path, inputs)
    train_labels = [s.label for s in labelled if s.split == "train"]
    labelled_paths = {s.path for s in labelled}
    keep = [i for i, p in enumerate(predictions.paths) if p not in labelled_paths]
    paths, probabilities = [predictions.paths[i] for i in keep], predictions.probabilities[keep]
    task, classes = teacher.task, teacher.classes
    if task.chosen_on_val == "thresholds":
        decision = teacher.thresholds
        truth = task.targets([r["true"] for r in val], classes)
        thresholds, goals = label_thresholds(val_probabilities(val, classes), truth, decision)
        train_rows = task.targets(train_labels, classes)
        chosen = choose_labels(
            paths, probabilities, classes, decision=decision, thresholds=thresholds, goals=goals, train_rows=train_rows
        )
        return chosen, len(keep)
    confidence, correct = [float(r["confidence"]) for r in val], [r["true"] == r["predicted"] for r in val]
    threshold, goal = val_threshold(confidence, correct)
    chosen = choose(paths, probabilities, classes, threshold=threshold, goal=goal, train_labels=train_labels)
    return chosen, len(keep)


def describe(chosen: Chosen, predicted: int, round_number: int) -> str:
    """One line: the threshold (a label's, multi-label), how many passed, how many were kept, per class and the caps."""
    counts = chosen.per_class()
    per_class = ", ".join(f"{c} {counts.get(c, 0)}/{cap}" for c, cap in chosen.caps.items())
    if chosen.per_label is not None:
        unreached = [name for name, threshold in chosen.per_label.items() if threshold > 1]
        if unreached:
            return (
                f"pseudo-labels, round {round_number}: no confidence reaches its val precision goal on at least 10 val "
                f"images for {', '.join(unreached)}; no pseudo-labels"
            )
        each = ", ".join(f"{name} {threshold:.3f}" for name, threshold in chosen.per_label.items())
        return (
            f"pseudo-labels, round {round_number}: every label's decision as sure as its own threshold ({each}; val "
            f"precision >= {chosen.goal:.3f} there or better): {chosen.passed} of {predicted} images passed, "
            f"{len(chosen.rows)} kept (per label, kept/cap by the labelled share: {per_class})"
        )
    if chosen.threshold > 1:
        return (
            f"pseudo-labels, round {round_number}: no confidence reaches val precision {chosen.goal:.3f} on at least "
            f"10 val images; no pseudo-labels"
        )
    return (
        f"pseudo-labels, round {round_number}: confidence >= {chosen.threshold:.3f} (val precision "
        f">= {chosen.goal:.3f} there): {chosen.passed} of {predicted} images passed, {len(chosen.rows)} kept "
        f"(per class, kept/cap by the labelled share: {per_class})"
    )


def student_overrides(teacher: runs.Run, time_limit: float, *, images: int) -> dict:
    """The teacher's recipe, started from its weights, with stronger augmentation unless the teacher chose some.

    The student fine-tunes for about as many steps as its teacher did (fewer epochs over its IMAGES, the
    labelled and pseudo-labelled training images together), so that a round costs about what the run did.
    It keeps the head phase (on the teacher's features, over its own training images) although its head is the
    teacher's: without it, and one more fine-tuning epoch in its place, the chain on clothing-small at 10 % ended
    4.0 test points lower on one seed and 1.1 higher on the other (benchmarks/RESULTS.md).
    """
    recipe = teacher.recipe
    overrides = recipe_overrides(recipe, leave_out=NOT_CARRIED)
    taught = sum(s.split == "train" for s in teacher.split())
    frozen, epochs = recipe.schedule.frozen_epochs, recipe.schedule.epochs
    fine_tune = max(1, math.ceil((epochs - frozen) * taught / max(1, images)))
    overrides.update(epochs=frozen + fine_tune, init_weights=str(teacher.path.resolve()))
    if recipe.augment.auto_augment == "none":
        overrides["auto_augment"] = STUDENT_AUGMENT
    if time_limit:
        overrides["time_limit"] = f"{max(time_limit, 1.0):.0f}s"
    return overrides


def student_rounds(
    run: runs.Run,
    inputs: list[str],
    *,
    train: Callable[..., runs.Run],
    console: Console,
    report: bool,
    time_limit: float = 0.0,
    run_seconds: float = 0.0,
    resume: bool = False,
) -> runs.Run:
    """Rounds of students while each is no worse on val than its teacher beyond noise (pseudo.NOISE_SE); returns
    the last kept (the run itself when none was), and records on RUN that its chain has ended.

    TRAIN is `imagefit.training.pipeline.train`, which trains each student (and calls this module after a run).
    Under TIME_LIMIT (seconds left for the students) each round gets its share (round_time.RoundClock), a round
    costing what the last one did (the run's RUN_SECONDS for the first). With RESUME, a round whose student folder
    exists (training.chain) takes that student, resumed if it was interrupted, instead of training a new one.
    """
    if not run.task.offers("pseudo-labels"):
        console.print(run.task.unsupported["pseudo-labels"], highlight=False)
        return run
    best = run
    labelled = run.split()  # each round adds its own pseudo-labels to the run's labelled split
    best_val = val_rows(run)
    clock = RoundClock(time_limit, cost=run_seconds, rounds=MAX_ROUNDS)
    judged_rounds = 0
    for round_number in range(1, MAX_ROUNDS + 1):
        found = chain.student_of(best, round_number) if resume else None
        if found is not None:
            student = chain.carry_on(found, train=train, console=console, report=report, said=f"round {round_number}: ")
        else:
            student = _new_round(best, inputs, labelled, best_val, round_number, clock, train, console, report)
        if student is None:
            break
        student_val = val_rows(student)
        verdict = paired_verdict(*(val_losses(rows, run.classes, run.task) for rows in (best_val, student_val)))
        console.print(judged(best, student, verdict, round_number), highlight=False)
        judged_rounds = round_number
        if not verdict.kept:
            break
        best, best_val = student, student_val
    chain.ended(chain.run_root(run.path), judged_rounds, best.path)
    return best


def _new_round(teacher, inputs, labelled, teacher_val, round_number, clock, train, console, report):
    """Round ROUND_NUMBER's new student of TEACHER, or None when the clock or the pseudo-labels allow none."""
    if not clock.room(console):
        return None
    chosen, predicted = pseudo_label(teacher, inputs, labelled, teacher_val)
    console.print(describe(chosen, predicted, round_number), highlight=False)
    if not chosen.rows:
        return None
    share = clock.share(round_number, console)  # the labelling pass took its part of the time
    if share is None:
        return None
    with clock.round():
        return _train_student(teacher, labelled, chosen, round_number, train, console, report, share)


def judged(teacher: runs.Run, student: runs.Run, verdict, round_number: int) -> str:
    """One line: the student's val figures against its teacher's, and whether it is kept."""
    before, after = teacher.metrics["val"], student.metrics["val"]
    said = f"{student.path.name} kept" if verdict.kept else f"{teacher.path.name} stays; no further round"
    if "log_loss" in before:
        loss = f"val log loss {before['log_loss']:.3f} -> {after['log_loss']:.3f}, each rescaled on val"
    else:  # multi-label: binary cross-entropy a label, summed (val_losses)
        loss = "val binary cross-entropy summed over the labels"
    return (
        f"round {round_number}: {loss} {verdict.difference:+.3f} an image (noise {verdict.noise:.3f} at "
        f"{NOISE_SE:.0f} standard errors over {verdict.count} images), accuracy "
        f"{before['accuracy']:.4f} -> {after['accuracy']:.4f}: {said}"
    )


def _train_student(teacher, samples, chosen, round_number, train, console, report, time_limit) -> runs.Run:
    """One student run folder: the run's split plus the pseudo-labelled images as training images."""
    target = chain.student_path(chain.run_root(teacher.path), round_number)
    merged = list(samples) + [Sample(path, label, "train") for path, label, _ in chosen.rows]
    with tempfile.TemporaryDirectory() as scratch:
        manifest, pseudo = Path(scratch) / "student.csv", Path(scratch) / "pseudo-labels.csv"
        write_manifest(manifest, merged, teacher)
        write_pseudo_labels(pseudo, chosen.rows, round_number, chosen.soft, teacher.classes)
        carried = {"student_of": str(teacher.path.resolve()), "pseudo_round": round_number, PSEUDO_LABELS: str(pseudo)}
        overrides = student_overrides(teacher, time_limit, images=sum(s.split == "train" for s in merged))
        try:
            return train(
                manifest, out=target, console=console, report=report, checks=False, carried=carried,
                unlabelled="none", **overrides,
            )  # fmt: skip
        except TrainingInterrupted:
            if runs.RunFiles(target).config.exists():
                raise  # its message names the student to resume
            raise KeyboardInterrupt from None  # nothing of the student was kept: the chain resumes from its run


def write_manifest(path: Path, samples: list[Sample], teacher: runs.Run) -> None:
    """The student's images as a CSV its run reads with the teacher's task: path,label,split; multi-label as one
    0/1 column a label (a joined label column with no image of two labels would read as one label an image)."""
    if teacher.task.chosen_on_val != "thresholds":
        write_split(path, samples)
        return
    rows = teacher.task.targets([s.label for s in samples], teacher.classes).astype(int)
    runs.write_rows(
        path, ["path", "split", *teacher.classes], [[s.path, s.split, *r] for s, r in zip(samples, rows, strict=True)]
    )
