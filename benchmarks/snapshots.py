"""Screen snapshot ensembles (issue 10 item 5): the mean of several fine-tuning epochs' predictions.

    python3 benchmarks/snapshots.py --sets clothing,hymenoptera,digits,cifar [-- OPTIONS]

Each set trains once with the defaults (plus OPTIONS), in this process, with a private feature cache;
a callback saves the weights after every fine-tuning epoch. Every epoch's model then predicts the val
and headline splits (training size, one view, no temperature: the plain settings of screen.py), and
the script compares, on the headline split (test where the data has one, else val):
- kept: the run's own model (the epoch with the lowest val loss, or the head alone when it won);
- top-k mean: the mean probabilities of the k candidates (the kept model and the other fine-tuning
  epochs) with the lowest val log loss, k = 2 and 3;
- greedy: Caruana's forward selection with replacement on val log loss (`ensembles.fit_weights`), started from the
  best candidate and stopped when no pick lowers val log loss (what `imagefit ensemble --method greedy`
  does across runs).
On sets whose headline split is val (hymenoptera, digits) the ensembles are chosen on the split they
are scored on: their gain there is optimistic. One Markdown row per set, then the wall time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from cifar_subset import write_subset
from screen import SETS

from imagefit.evaluation.calibration import log_loss


def accuracy(probabilities: np.ndarray, targets: np.ndarray) -> float:
    return float((probabilities.argmax(1) == targets).mean())


def predictions(run, model, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (temperature 1, one view, training size) and targets of RUN's SPLIT."""
    from imagefit.prediction.batches import map_batches
    from imagefit.prediction.predictors import TorchPredictor
    from imagefit.tasks import softmax

    samples = [s for s in run.split() if s.split == split]
    predictor = TorchPredictor(model.eval(), run.classes, run.train_preprocess)
    paths, logits, _ = map_batches(predictor.logits, run.train_preprocess, [s.path for s in samples])
    truth = {s.path: run.classes.index(s.label) for s in samples}
    return softmax(logits), np.array([truth[p] for p in paths])


def screen_one(name: str, data: Path, scratch: Path, overrides: dict) -> str:
    from safetensors.torch import load_file

    import imagefit
    from imagefit.evaluation.ensembles import fit_weights
    from imagefit.models.trained import load_trained
    from imagefit.runs import load_run
    from imagefit.training.soup import EpochWeights

    started = time.perf_counter()
    out, epochs = scratch / name, scratch / f"{name}-epochs"
    offset = 3  # the head's epochs on cached features come before Lightning's first epoch
    imagefit.train(data, out=out, report=False, callbacks=[EpochWeights(epochs, offset=offset)], **overrides)
    trained = time.perf_counter() - started
    run = load_run(out)
    headline = "test" if "test" in run.metrics else "val"
    model = load_trained(run)
    names, val, head = ["kept"], [], []
    probabilities, val_targets = predictions(run, model, "val")
    val.append(probabilities)
    probabilities, targets = predictions(run, model, headline)
    head.append(probabilities)
    for path in sorted(epochs.glob("epoch-*.safetensors"), key=lambda p: int(p.stem.split("-")[1])):
        if int(path.stem.split("-")[1]) == run.metrics.get("best_epoch"):
            continue  # the kept model is this epoch: a candidate once
        model.load_state_dict(load_file(str(path)))
        names.append(path.stem.split("-")[1])
        val.append(predictions(run, model, "val")[0])
        head.append(predictions(run, model, headline)[0])
    losses = [log_loss(p, val_targets) for p in val]
    order = list(np.argsort(losses))
    cells = [f"{accuracy(head[0], targets):.4f} (epoch {run.metrics.get('best_epoch')})"]
    for k in (2, 3):
        members = order[:k]
        mean = np.mean([head[i] for i in members], axis=0)
        val_mean = np.mean([val[i] for i in members], axis=0)
        label = "+".join(names[i] for i in members)
        cells.append(f"{accuracy(mean, targets):.4f} ({label}; val loss {log_loss(val_mean, val_targets):.3f})")
    weights = fit_weights(np.stack(val), val_targets, "greedy")  # imagefit ensemble --method greedy
    mean, val_mean = np.tensordot(weights, np.stack(head), axes=1), np.tensordot(weights, np.stack(val), axes=1)
    label = "+".join(names[i] for i in np.flatnonzero(weights))
    cells.append(f"{accuracy(mean, targets):.4f} ({label}; val loss {log_loss(val_mean, val_targets):.3f})")
    per_epoch = ", ".join(f"{n}: {accuracy(h, targets):.4f}" for n, h in zip(names[1:], head[1:], strict=True))
    wall = time.perf_counter() - started
    print(f"<!-- {name}: {headline} accuracy per fine-tuning epoch: {per_epoch}; kept val loss {losses[0]:.3f} -->")
    return f"| {name} ({headline}) | {' | '.join(cells)} | {trained / 60:.1f} + {(wall - trained) / 60:.1f} min |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="recipe options after --, as key=value")
    args = parser.parse_args()
    overrides = dict(o.split("=", 1) for o in args.options if o != "--")
    names = [n.strip() for n in args.sets.split(",") if n.strip()]

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        os.environ["IMAGEFIT_CACHE"] = str(scratch / "cache")
        for name in names:
            data = SETS[name] or write_subset(scratch / "cifar10-subset.csv")
            rows.append(screen_one(name, data, scratch, overrides))
            print(rows[-1], flush=True)
    print("| set (split) | kept | mean of top 2 (val log loss) | mean of top 3 | greedy |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
