"""Unknown images and new classes on clothing-small: two classes held out of training.

    python3 benchmarks/openset.py ../shared/data/clothing-small --hold skirt,hat --keep runs/open --time-limit 8m

Trains with the defaults on clothing-small without the held-out classes (train and val), then:
1. `imagefit evaluate RUN test --unknown` on the full test split: AUROC of each unknown score
   (kNN distance, max softmax, energy) at telling held-out images from known ones, and the false
   alarms and misses at the run's threshold;
2. `imagefit add-class` with 5 and 20 training images of the first held-out class: that class's
   recall on test, and the other classes' accuracy before and after; beside it, a nearest-prototype
   classifier on the same embeddings (class means of the training images, cosine), the alternative
   the issue asked to measure.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import imagefit
from imagefit.data import scan
from imagefit.evaluation.evaluator import evaluate
from imagefit.prediction.loading import predict
from imagefit.prediction.predictors import TorchPredictor
from imagefit.training.add_class import add_class, penultimate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--hold", default="skirt,hat")
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--time-limit", default="", help="passed to the training (empty: the defaults' epochs)")
    args = parser.parse_args()
    held = [h.strip() for h in args.hold.split(",")]
    samples = scan(args.data).samples
    scratch = Path(tempfile.mkdtemp())
    table = scratch / "known.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows([s.path, s.label, s.split] for s in samples if s.label not in held and s.split != "test")
    started = time.perf_counter()
    run = imagefit.train(table, out=args.keep or scratch / "run", report=False, time_limit=args.time_limit)
    print(f"trained without {', '.join(held)} in {(time.perf_counter() - started) / 60:.1f} min")
    test = scratch / "test.csv"
    with test.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([s.path, s.label] for s in samples if s.split == "test")
    (result,) = evaluate(run.path, test, unknown=True)
    found = result.metrics["unknown"]
    print("| score | AUROC (held-out vs known test images) |")
    print("|---|---|")
    for name, value in found["auroc"].items():
        print(f"| {name} | {value:.4f} |")
    print(
        f"at the threshold (5% of val flagged): {found['false_alarm_rate']:.1%} of {found['known']} known test "
        f"images flagged, {found['miss_rate']:.1%} of {found['unknown']} held-out images missed"
    )
    new = held[0]
    pool = [s.path for s in samples if s.label == new and s.split == "train"]
    new_test = [s.path for s in samples if s.label == new and s.split == "test"]
    known_test = [s for s in samples if s.split == "test" and s.label not in held]
    before = predict(run.path, [s.path for s in known_test]).labels
    known_before = np.mean([p == s.label for p, s in zip(before, known_test, strict=True)])
    print(f"\nother classes' accuracy before: {known_before:.4f}")
    print(f"| examples of '{new}' | method | '{new}' recall on test | other classes' accuracy |")
    print("|---|---|---|---|")
    for count in (5, 20):
        grown = add_class(run.path, new, pool[:count], out=scratch / f"grown-{count}")
        recall = np.mean([label == new for label in predict(grown.path, new_test).labels])
        after = predict(grown.path, [s.path for s in known_test]).labels
        others = np.mean([p == s.label for p, s in zip(after, known_test, strict=True)])
        print(f"| {count} | head row (kept) | {recall:.4f} | {others:.4f} |")
        recall_p, others_p = _prototypes(run, pool[:count], new, new_test, known_test)
        print(f"| {count} | nearest prototype | {recall_p:.4f} | {others_p:.4f} |", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


def _prototypes(run, examples, new, new_test, known_test):
    """A nearest-class-mean classifier (cosine) on the run's penultimate features: the other way to add a class."""
    predictor = TorchPredictor.from_run(run.path)
    model = predictor.model
    train = [s for s in run.split() if s.split == "train"]
    paths, features = penultimate(model, predictor, [s.path for s in train])
    label_of = {s.path: s.label for s in train}
    classes = [*run.classes, new]
    means = [features[[label_of[p] == c for p in paths]].mean(axis=0) for c in run.classes]
    means.append(penultimate(model, predictor, examples)[1].mean(axis=0))
    means = np.stack(means)
    means /= np.linalg.norm(means, axis=1, keepdims=True)

    def labels(locators):
        _, values = penultimate(model, predictor, locators)
        values = values / np.linalg.norm(values, axis=1, keepdims=True)
        return [classes[i] for i in (values @ means.T).argmax(axis=1)]

    recall = np.mean([label == new for label in labels(new_test)])
    others = np.mean([p == s.label for p, s in zip(labels([s.path for s in known_test]), known_test, strict=True)])
    return recall, others


if __name__ == "__main__":
    main()
