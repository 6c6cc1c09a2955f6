"""The classical floor on raw pixels: which classifier on 32x32 grey thumbnails, measured on val.

    python3 benchmarks/pixel_floor.py --sets digits,steel,tiles,clothing,hymenoptera --seeds 42,2 \
        --json benchmarks/results/issue28-pixel-floor.json

Per set and seed: the split a default run makes (15 % val carved by the seed, the set's own splits kept, steel's
20 % test split), the training images sampled as the baseline samples them (at most 2,000), the thumbnails of the
evaluation views at the training preprocessing a far run uses (192 px, squashed: what adapt gives these sets; the
thumbnail averages the view, so the network's size changes it little). Rows: the logistic regression on
standardised thumbnails (stop 40's floor), and scikit-learn's SVC (RBF kernel, "scale" width) at C 1 and 10, on
the grey levels as they are and standardised. Val accuracy, balanced accuracy and the fit's seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from screen import SET_OPTIONS, SETS
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import find_samples
from imagefit.data.split import assign_splits
from imagefit.training.baseline import pixel_rows, training_rows

PREPROCESS = Preprocess(size=192, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0, resize="squash")


def variants() -> dict:
    """Name -> (whether the rows are standardised, a fresh classifier)."""
    rows = {"logistic regression, standardised (C 0.1)": (True, lambda: LogisticRegression(max_iter=1000, C=0.1))}
    for scaled in (False, True):
        for c in (1.0, 10.0):
            rows[f"SVC C {c:g}, {'standardised' if scaled else 'grey levels'}"] = (scaled, lambda c=c: SVC(C=c))
    return rows


def measure(name: str, seed: int) -> dict:
    options = SET_OPTIONS.get(name, [])
    test = float(options[1]) if options else 0.0
    samples = assign_splits(find_samples(SETS[name]).samples, val_split=0.15, test_split=test, seed=seed)
    x_train, y_train = training_rows([s for s in samples if s.split == "train"], PREPROCESS, seed=seed)
    x_val, y_val = pixel_rows([s for s in samples if s.split == "val"], PREPROCESS)
    scaler = StandardScaler().fit(x_train)
    found = {}
    for label, (scaled, make) in variants().items():
        fit_rows, val_rows = (scaler.transform(x_train), scaler.transform(x_val)) if scaled else (x_train, x_val)
        started = time.perf_counter()
        guessed = make().fit(fit_rows, y_train).predict(val_rows)
        found[label] = {
            "val_accuracy": round(float(np.mean(guessed == np.array(y_val))), 4),
            "val_balanced": round(float(balanced_accuracy_score(y_val, guessed)), 4),
            "seconds": round(time.perf_counter() - started, 2),
        }
        print(f"{name:12s} seed {seed:3d}  {label:45s} {found[label]}", flush=True)
    return {"train": len(y_train), "val": len(y_val), "variants": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="digits,steel,tiles,clothing,hymenoptera")
    parser.add_argument("--seeds", default="42,2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    results = {f"{name} seed {seed}": measure(name, seed) for name in args.sets.split(",") for seed in seeds}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
