"""What shifting a run's logits by tau x log class prior does on its val and test splits (issue 28, imbalance).

Reads a finished run folder's predictions-val.csv and predictions-test.csv (the calibrated probabilities of the
prediction settings chosen on val) and the training counts in split.csv; for each tau prints accuracy /
macro-F1 / balanced accuracy on val and test, and which tau `imagefit.evaluation.priors` would choose on val.
Run it on a run trained with `--imbalance none` (no shift stored) to see the whole curve:

    python3 benchmarks/prior_shift.py RUN [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from imagefit.evaluation.priors import choose_adjustment, class_priors

TAUS = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
FIXED = ("path", "true", "predicted", "confidence", "unknown_score")


def load(run: Path, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    with (run / f"predictions-{split}.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    classes = [k for k in rows[0] if k not in FIXED]
    probabilities = np.array([[float(r[c]) for c in classes] for r in rows])
    return classes, probabilities, np.array([classes.index(r["true"]) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    classes, val, val_y = load(args.run, "val")
    _, test, test_y = load(args.run, "test")
    with (args.run / "split.csv").open(newline="") as handle:
        train = [r["label"] for r in csv.DictReader(handle) if r["split"] == "train"]
    priors = class_priors(train, classes)
    rows = []
    for tau in TAUS:
        row = {"tau": tau}
        for name, probabilities, truth in (("val", val, val_y), ("test", test, test_y)):
            predicted = (np.log(probabilities + 1e-12) - tau * np.log(priors)).argmax(1)
            row[name] = [
                round(accuracy_score(truth, predicted), 4),
                round(f1_score(truth, predicted, average="macro"), 4),
                round(balanced_accuracy_score(truth, predicted), 4),
            ]
        rows.append(row)
        print(f"tau {tau:5.2f}: val {'/'.join(map(str, row['val']))}  test {'/'.join(map(str, row['test']))}")
    chosen = choose_adjustment(np.log(val + 1e-12), val_y, priors)["tau"]
    print(f"chosen on val (imagefit.evaluation.priors): tau {chosen}")
    if args.json:
        facts = {"run": str(args.run), "priors": priors.tolist(), "rows": rows, "chosen": chosen}
        args.json.write_text(json.dumps(facts))


if __name__ == "__main__":
    main()
