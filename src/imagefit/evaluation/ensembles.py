"""Building an ensemble folder: member weights fitted on the members' shared validation split.

Methods: `mean` (equal weights), `weighted` (non-negative weights summing to one that minimise
val log loss, started from the best member, so never worse than it on val), `greedy` (Caruana et
al. 2004: members added with replacement while val log loss falls). The folder's layout is in
imagefit.prediction.ensembles, which loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagefit import runs
from imagefit.data.split import write_split
from imagefit.errors import UserError
from imagefit.evaluation.calibration import log_loss
from imagefit.evaluation.evaluator import evaluate, read_predictions
from imagefit.files import output_folder, write_json
from imagefit.prediction.ensembles import Ensemble, is_ensemble, load_ensemble
from imagefit.tasks.scores import classification_metrics

METHODS = ("mean", "weighted", "greedy")
GREEDY_STEPS = 25


def make_ensemble(members: list[str | Path], *, out: str | Path, method: str = "weighted") -> Ensemble:
    """Fit the weights of MEMBERS on their shared val split and write the ensemble folder OUT."""
    if method not in METHODS:
        raise UserError(f"--method {method} is not one of: {', '.join(METHODS)}")
    if len(members) < 2:
        raise UserError("an ensemble needs at least two runs: imagefit ensemble RUN RUN --out ENS")
    loaded = [runs.load_run(Path(m)) for m in members]
    for run in loaded:
        run.task.require("ensemble", run.path)
    _check_compatible(loaded)
    val = {name: _stored_probabilities(run, "val") for name, run in zip(members, loaded, strict=True)}
    paths, targets = _aligned_targets(loaded[0], "val")
    stacked = np.stack([_in_order(val[m], paths) for m in members])  # [members, N, C]
    weights = fit_weights(stacked, targets, method)
    out = output_folder(Path(out))
    files = runs.RunFiles(out)
    if any(files.root.iterdir()) and not is_ensemble(out):
        raise UserError(f"{out} exists and holds something else. Pick another --out")
    write_json(
        files.ensemble,
        {
            "format_version": 1,
            "method": method,
            "fitted_on": "val",
            "classes": loaded[0].classes,
            "members": [
                {"run": str(run.path.resolve()), "weight": round(float(w), 6)}
                for run, w in zip(loaded, weights, strict=True)
            ],
        },
    )
    write_json(files.labels, loaded[0].classes)
    write_split(files.split, loaded[0].split())
    write_json(files.metrics, _figures(loaded, weights))
    return load_ensemble(out)


def fit_weights(probabilities: np.ndarray, targets: np.ndarray, method: str) -> np.ndarray:
    """Weights of the members (summing to one) from their val probabilities [members, N, C]."""
    count = len(probabilities)
    losses = [log_loss(p, targets) for p in probabilities]
    best = int(np.argmin(losses))
    if method == "mean":
        return np.full(count, 1.0 / count)
    if method == "greedy":
        chosen = [best]
        for _ in range(GREEDY_STEPS - 1):
            current = log_loss(probabilities[chosen].mean(axis=0), targets)
            trial = [log_loss(probabilities[chosen + [k]].mean(axis=0), targets) for k in range(count)]
            if min(trial) >= current:
                break
            chosen.append(int(np.argmin(trial)))
        return np.bincount(chosen, minlength=count) / len(chosen)
    from scipy.optimize import minimize

    start = np.full(count, 0.0)
    start[best] = 1.0
    result = minimize(
        lambda w: log_loss(np.tensordot(w / max(w.sum(), 1e-12), probabilities, axes=1), targets),
        start,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * count,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"maxiter": 200},
    )
    weights = np.clip(result.x, 0.0, None)
    weights = weights / weights.sum() if weights.sum() > 0 else start
    # Never worse than the best member on val: the optimiser started there, and this keeps it honest.
    if log_loss(np.tensordot(weights, probabilities, axes=1), targets) > losses[best]:
        return start
    return weights


def _check_compatible(loaded: list[runs.Run]) -> None:
    first = loaded[0]
    reference = {(s.path, s.label, s.split) for s in first.split() if s.split in ("val", "test")}
    for run in loaded[1:]:
        if run.classes != first.classes:
            raise UserError(
                f"{run.path} has classes {', '.join(run.classes)}, {first.path} has {', '.join(first.classes)}: "
                "ensemble members must share their labels"
            )
        if {(s.path, s.label, s.split) for s in run.split() if s.split in ("val", "test")} != reference:
            raise UserError(
                f"{run.path} was validated on other images than {first.path}: ensemble members must share their "
                "split (train them with `imagefit train DATA --model a,b,c`, or on the first run's split.csv)"
            )


def _stored_probabilities(run: runs.Run, split: str) -> dict[str, np.ndarray]:
    """A member's probabilities by path from its predictions CSV (made by `imagefit evaluate`)."""
    path = runs.RunFiles(run.path).predictions(split)
    if not path.exists():
        evaluate(run.path, split=split)
    rows, classes = read_predictions(path)
    return {row["path"]: np.array([float(row[c]) for c in classes]) for row in rows}


def _aligned_targets(run: runs.Run, split: str) -> tuple[list[str], np.ndarray]:
    samples = [s for s in run.split() if s.split == split]
    return [s.path for s in samples], np.array([run.classes.index(s.label) for s in samples])


def _in_order(by_path: dict[str, np.ndarray], paths: list[str]) -> np.ndarray:
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise UserError(f"{missing[0]} has no stored prediction; run `imagefit evaluate` on that member again")
    return np.stack([by_path[p] for p in paths])


def _figures(loaded: list[runs.Run], weights: np.ndarray) -> dict:
    """The ensemble's figures on val and test, each member's, and the gain over the best member."""
    figures: dict = {"members": []}
    for run, weight in zip(loaded, weights, strict=True):
        member = {"run": str(run.path), "model": run.recipe.model.backbone, "weight": round(float(weight), 6)}
        member.update({split: run.metrics[split] for split in ("val", "test") if split in run.metrics})
        figures["members"].append(member)
    for split in ("val", "test"):
        paths, targets = _aligned_targets(loaded[0], split)
        if not paths:
            continue
        stacked = np.stack([_in_order(_stored_probabilities(run, split), paths) for run in loaded])
        probabilities = np.tensordot(weights, stacked, axes=1)
        figures[split] = classification_metrics(targets.tolist(), probabilities, loaded[0].classes)
        best = max(run.metrics.get(split, {}).get("accuracy", 0.0) for run in loaded)
        figures[split]["gain_over_best_member"] = round(figures[split]["accuracy"] - best, 4)
    return figures
