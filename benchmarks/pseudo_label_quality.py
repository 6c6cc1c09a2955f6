"""How right are the pseudo-labels? The teacher's own probabilities against label propagation in its embedding space.

    python3 benchmarks/pseudo_label_quality.py --sets clothing --keep 0.1 --seed 1 --json results/F.json

The labelled-only run of `pseudo_labels.py` (the same split and seed: a KEEP share of the training labels, the
rest an unlabelled pool) is trained in a child process (or `--run DIR` reuses one), then on the pool, whose true
labels are held back:
- `teacher`: the run's calibrated probabilities (what `train --unlabelled` labels with);
- `knn`: each pool image's teacher probabilities averaged with those of its K nearest pool neighbours and the
  one-hot labels of its nearest labelled images (the run's own embedding, cosine);
- `spreading`: scikit-learn's LabelSpreading over a K-nearest-neighbour graph of labelled + pool embeddings,
  started from the labelled one-hot rows, then multiplied into the teacher's probabilities.
For each: accuracy over the whole pool, and the precision of the most confident images at the coverage the
chain's val threshold gives the teacher (`training.pseudo.val_threshold`) and at 50 / 80 / 90 % of the pool.
No training beyond the labelled-only run: this screens whether better labels are there to be had.

`--oracle` then trains two fresh runs (the defaults) on the labelled-only run's training images plus the images
the chain would take (`training.pseudo.choose`: the val threshold and the class caps), with its val and the test
split unchanged: one with their true labels, one with the teacher's labels. The first against the fully labelled
run says what the images left out cost; the two against each other, what the wrong pseudo-labels cost.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from pseudo_labels import SETS, run_child, split_share
from sklearn.semi_supervised import LabelSpreading

K = 10


def ranked_precision(confidence: np.ndarray, right: np.ndarray, count: int) -> float:
    order = np.argsort(-confidence, kind="stable")[: max(1, count)]
    return float(right[order].mean())


def scores(name: str, probabilities: np.ndarray, truth: np.ndarray, coverages: dict[str, int]) -> dict:
    labels = probabilities.argmax(axis=1)
    right = labels == truth
    confidence = probabilities.max(axis=1)
    row = {"method": name, "accuracy_all": round(float(right.mean()), 4)}
    for key, count in coverages.items():
        row[f"precision_{key}"] = round(ranked_precision(confidence, right, count), 4)
    return row


def propagated(known_vectors, known_onehot, pool_vectors, teacher) -> dict[str, np.ndarray]:
    """The pool's labels by neighbours in the embedding space (`knn`, `spreading_alone`, `spreading`, as above)."""
    # knn: own probabilities + the K nearest pool images' + the labelled neighbours' one-hot rows (within the K
    # nearest of all), each weighted by cosine similarity.
    everything = np.concatenate([known_vectors, pool_vectors])
    targets = np.concatenate([known_onehot, teacher])
    similarity = pool_vectors @ everything.T
    np.fill_diagonal(similarity[:, len(known_vectors) :], -np.inf)  # not itself
    nearest = np.argsort(-similarity, axis=1)[:, :K]
    weights = np.clip(np.take_along_axis(similarity, nearest, axis=1), 0, None)
    smoothed = (weights[:, :, None] * targets[nearest]).sum(axis=1) / np.maximum(
        weights.sum(axis=1, keepdims=True), 1e-9
    )
    spreading = LabelSpreading(kernel="knn", n_neighbors=K, alpha=0.2, max_iter=100)
    spreading.fit(everything, np.concatenate([known_onehot.argmax(axis=1), -np.ones(len(pool_vectors), dtype=int)]))
    spread = spreading.label_distributions_[len(known_vectors) :]
    product = teacher * np.clip(spread, 1e-6, None)
    return {
        "knn": 0.5 * teacher + 0.5 * smoothed,
        "spreading_alone": spread,
        "spreading": product / product.sum(axis=1, keepdims=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="clothing")
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", type=Path, help="a labelled-only run of this split to reuse")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--oracle", action="store_true", help="train on the chosen images, true and taught labels")
    args = parser.parse_args()

    import imagefit
    from imagefit.audit.embeddings import embed, embedding_model
    from imagefit.evaluation.evaluator import read_predictions
    from imagefit.training.pseudo import choose, val_threshold

    scratch = Path(tempfile.mkdtemp(prefix="plq-"))
    train_items, test = SETS[args.sets](scratch)
    labelled, pool = split_share(train_items, args.keep, args.seed)
    run = args.run
    if run is None:
        run = scratch / f"{args.sets}-{args.keep}"
        child = run_child(labelled, test, run, [], dict(os.environ), None)
        print(f"# labelled-only run: {child['wall']:.0f} s", flush=True)
    predictions = imagefit.predict(run, [p for p, _ in pool])
    classes = predictions.classes
    index = {c: i for i, c in enumerate(classes)}
    by_path = dict(zip(map(os.path.realpath, predictions.paths), predictions.probabilities, strict=True))
    teacher = np.stack([by_path[os.path.realpath(p)] for p, _ in pool])
    truth = np.array([index[label] for _, label in pool])

    val_rows, _ = read_predictions(run / "predictions-val.csv")
    val_paths = {os.path.realpath(r["path"]) for r in val_rows}
    threshold, goal = val_threshold(
        np.array([float(r["confidence"]) for r in val_rows]), np.array([r["true"] == r["predicted"] for r in val_rows])
    )
    fitted = [(p, label) for p, label in labelled if os.path.realpath(p) not in val_paths]  # what the run trained on
    fitted_labels = [label for _, label in fitted]
    chosen = choose([p for p, _ in pool], teacher, classes, threshold=threshold, goal=goal, train_labels=fitted_labels)

    backbone, preprocess, cache_name = embedding_model(run, median_side=0)
    locators = [p for p, _ in fitted] + [p for p, _ in pool]
    vectors = embed(locators, locators, backbone, preprocess, cache_name=cache_name, cache_dir=scratch / "cache")
    known_onehot = np.eye(len(classes))[[index[label] for label in fitted_labels]]
    sources = {"teacher": teacher} | propagated(vectors[: len(fitted)], known_onehot, vectors[len(fitted) :], teacher)

    passed = chosen.passed
    coverages = {"threshold": passed, "50": len(pool) // 2, "80": int(0.8 * len(pool)), "90": int(0.9 * len(pool))}
    rows = [scores(name, probabilities, truth, coverages) for name, probabilities in sources.items()]
    test_metrics = json.loads((run / "metrics.json").read_text())["test"]
    result = {
        "set": args.sets,
        "keep": args.keep,
        "seed": args.seed,
        "labelled_fitted": len(fitted),
        "val": len(val_rows),
        "pool": len(pool),
        "threshold": threshold,
        "goal": goal,
        "passed": passed,
        "teacher_test_accuracy": test_metrics["accuracy"],
        "k": K,
        "rows": rows,
    }
    if args.oracle:
        val = [(r["path"], r["true"]) for r in val_rows]
        result["oracle"] = oracle(chosen, dict(pool), fitted, val, test, scratch)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"| method | pool accuracy | precision at the threshold's {passed} | at 50 % | at 80 % | at 90 % |")
    for row in rows:
        print(
            f"| {row['method']} | {row['accuracy_all']:.4f} | {row['precision_threshold']:.4f} | "
            f"{row['precision_50']:.4f} | {row['precision_80']:.4f} | {row['precision_90']:.4f} |"
        )


def oracle(chosen, true_label: dict[str, str], fitted, val, test, scratch: Path) -> dict:
    """Two fresh runs on the FITTED images + the CHOSEN ones, with true and with taught labels: test figures."""
    out = {"chosen": len(chosen.rows), "chosen_right": sum(true_label[p] == lab for p, lab, _ in chosen.rows)}
    for name, taken in [
        ("true_labels", [(p, true_label[p]) for p, _, _ in chosen.rows]),
        ("taught_labels", [(p, lab) for p, lab, _ in chosen.rows]),
    ]:
        folder = scratch / f"oracle-{name}"
        child = run_child(fitted + taken, test, folder, [], dict(os.environ), None, val=val)
        metrics = json.loads((folder / "metrics.json").read_text())
        out[name] = {key: metrics["test"][key] for key in ("accuracy", "macro_f1")} | {
            "val_accuracy": metrics["val"]["accuracy"],
            "wall": round(child["wall"]),
        }
        print(f"# oracle {name}: {json.dumps(out[name])}", flush=True)
    return out


if __name__ == "__main__":
    main()
