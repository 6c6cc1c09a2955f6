"""The prediction settings each rule would choose on val, and what they score on test, for the same trained models.

    python3 benchmarks/inference_choice.py RUN [RUN ...] --json F

For each run folder (kept whole by `screen.py --keep-runs DIR`), the trained weights are loaded without the logit
shift, the val and test images are predicted once at each evaluation size the run tried (`polish.evaluation_sizes`)
with both views (image and mirror, where the recipe flips), and the candidates are scored as `imagefit train` scores
them (`polish.score_views`). Five rules then pick, from the same candidates:

- `margin`: a costlier candidate must lower val log loss, each at the temperature it predicts with, by
  `polish.MARGIN` (1 %, relative): the rule of runs before stop 51;
- `1se` and `2se`: by MARGIN and by more than 1 or 2 standard errors of the paired per-image difference in log
  loss (the students' rule for `--unlabelled`), tried at stop 49 and not adopted;
- `rescaled`: `margin` on each candidate's val log loss at the temperature that fits it best, whatever its
  number of mistakes (the run's own rule keeps T = 1 under 3 val mistakes, so a candidate with more mistakes gets a
  temperature and a lower loss than a mistake-free one that keeps T = 1: stop 50's digits ceiling); tried at
  stop 51 and not adopted (on 43 val images one mistake more or less decided it);
- `plain`: `margin`, but where any candidate has under 3 val mistakes all are compared before scaling:
  `polish.pick`, the rule of runs since stop 51.

Each pick predicts with its temperature as the run would fit it (`fit_temperature`'s own rule), gets the run's
imbalance shift chosen again on it (where the run adjusts logits for imbalance) and is scored on test: accuracy,
macro-F1 and balanced accuracy. Training is the same for all rules, so the differences are the rules' alone. The
row of the rule the run used reproduces the run's own test figures (beside them in the output).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score, f1_score

from imagefit import runs
from imagefit.evaluation.calibration import fit_temperature, log_loss, view_probabilities
from imagefit.evaluation.priors import choose_adjustment, class_priors
from imagefit.models.factory import build_classifier, fixed_input_size
from imagefit.prediction.batches import map_batches
from imagefit.prediction.predictors import TorchPredictor
from imagefit.training import polish

RULES = {"margin": None, "1se": 1.0, "2se": 2.0, "rescaled": "rescaled", "plain": "plain"}


def logits_by_size(model, run, samples, sizes: list[int], views: int) -> dict[int, tuple[list[str], np.ndarray]]:
    predictor = TorchPredictor(model, run.classes, run.train_preprocess, device="cpu")
    out = {}
    for size in sizes:
        sized = dataclasses.replace(run.train_preprocess, size=size)
        paths, logits, _ = map_batches(predictor.logits, sized, [s.path for s in samples], views=views, average=False)
        out[size] = (paths, logits)
    return out


def image_losses(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each image's negative log-likelihood of its true class (their mean is `log_loss`)."""
    return -np.log(np.clip(probabilities[np.arange(len(targets)), targets], 1e-12, 1.0))


def noise_pick(candidates: list[dict], losses: dict, noise_se: float) -> dict:
    """`polish.pick`, with a costlier candidate also required to beat NOISE_SE standard errors of the paired
    per-image difference in val log loss."""
    ordered = sorted(candidates, key=lambda c: (c["size"] ** 2 * c["tta_n"], c["tta_n"]))
    best = ordered[0]
    for candidate in ordered[1:]:
        difference = losses[(candidate["size"], candidate["tta_n"])] - losses[(best["size"], best["tta_n"])]
        noise = noise_se * float(difference.std(ddof=1)) / np.sqrt(len(difference))
        if best["val_log_loss"] - candidate["val_log_loss"] > max(best["val_log_loss"] * polish.MARGIN, noise):
            best = candidate
    return best


def candidates_of(val: dict, targets: np.ndarray, views: int) -> tuple[list[dict], dict]:
    """The candidates as the run scores them (with their val log loss at the temperature that fits each best), and
    each one's per-image val log loss at its own temperature."""
    candidates, losses = [], {}
    for size, (_, logits) in val.items():
        for candidate in polish.score_views(logits, targets, size, views, 0.0):
            chosen = logits[:, : candidate["tta_n"]]
            probabilities = view_probabilities(chosen, candidate["temperature"])
            losses[(size, candidate["tta_n"])] = image_losses(probabilities, targets)
            best_fit = view_probabilities(chosen, fit_temperature(chosen, targets, min_mistakes=0))
            candidates.append(candidate | {"val_log_loss_rescaled": log_loss(best_fit, targets)})
    return candidates, losses


def choose(rule: str, candidates: list[dict], losses: dict) -> dict:
    noise = RULES[rule]
    if noise == "plain":
        return polish.pick(candidates)
    if noise == "rescaled":
        return polish.pick(candidates, "val_log_loss_rescaled")
    if noise is None:
        return polish.pick(candidates, "val_log_loss")
    return noise_pick(candidates, losses, noise)


def scores_on(true: np.ndarray, predicted: np.ndarray) -> dict:
    return {
        "accuracy": round(float((true == predicted).mean()), 4),
        "macro_f1": round(float(f1_score(true, predicted, average="macro", zero_division=0)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(true, predicted)), 4),
    }


def evaluate_run(path: Path) -> dict:
    run = runs.load_run(path)
    model, _, _ = build_classifier(run.recipe.model, len(run.classes), pretrained=False)
    model.load_state_dict(load_file(run.files.model), strict=True)
    model.eval()
    index = {name: i for i, name in enumerate(run.classes)}
    samples = run.split()
    val = [s for s in samples if s.split == "val"]
    test = [s for s in samples if s.split == "test"]
    tried = {
        (c["size"], c["tta_n"]) for c in run.config.get("inference_candidates", [])
    }  # what the run's budget let it try
    views = max((v for _, v in tried), default=2 if run.recipe.augment.hflip else 1)
    sizes = polish.evaluation_sizes(run.train_preprocess.size, fixed=fixed_input_size(model.backbone))
    sizes = [size for size in sizes if not tried or any(s == size for s, _ in tried)]
    val_logits = logits_by_size(model, run, val, sizes, views)
    labels = {s.path: index[s.label] for s in samples}
    val_targets = np.array([labels[p] for p in val_logits[sizes[0]][0]])
    candidates, losses = candidates_of(val_logits, val_targets, views)
    candidates = [c for c in candidates if not tried or (c["size"], c["tta_n"]) in tried]
    adjust = run.config.get("imbalance_handling") == "adjust"
    priors = class_priors([s.label for s in samples if s.split == "train"], run.classes) if adjust else None
    scored = test or val  # sets without a test split (hymenoptera, digits) are scored on val, as the screen does
    test_logits = logits_by_size(model, run, scored, sizes, views) if test else val_logits
    test_targets = np.array([labels[p] for p in test_logits[sizes[0]][0]])
    rows = {}
    for rule in RULES:
        best = choose(rule, candidates, losses)
        size, count, temperature = best["size"], best["tta_n"], best["temperature"]
        offsets = np.zeros(len(run.classes))
        if priors is not None:
            logits = val_logits[size][1][:, :count]
            offsets = np.asarray(choose_adjustment(logits, val_targets, priors, temperature=temperature)["offsets"])
            temperature = fit_temperature(logits + offsets, val_targets)
        shifted = test_logits[size][1][:, :count] + offsets
        predicted = view_probabilities(shifted, temperature).argmax(axis=1)
        rows[rule] = {"size": size, "views": count, **scores_on(test_targets, predicted)}
    own = run.metrics.get("test" if test else "val", {})
    return {
        "run": str(path),
        "scored_on": "test" if test else "val",
        "train_size": run.train_preprocess.size,
        "val_images": len(val_targets),
        "rules": rows,
        "run_metrics": {k: round(own.get(k, float("nan")), 4) for k in ("accuracy", "macro_f1", "balanced_accuracy")},
        "candidates": candidates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    print("| run | val images | " + " | ".join(f"{r}: pick, acc / F1 / bal" for r in RULES) + " | run's own |")
    print("|---|---|" + "---|" * (len(RULES) + 1))
    for path in args.runs:
        result = evaluate_run(path)
        results.append(result)
        cells = [
            f"{r['size']} px x{r['views']}, {r['accuracy']:.4f} / {r['macro_f1']:.4f} / {r['balanced_accuracy']:.4f}"
            for r in result["rules"].values()
        ]
        own = result["run_metrics"]
        mine = f"{own['accuracy']:.4f} / {own['macro_f1']:.4f} / {own['balanced_accuracy']:.4f}"
        print(f"| {path} ({result['scored_on']}) | {result['val_images']} | " + " | ".join(cells) + f" | {mine} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
