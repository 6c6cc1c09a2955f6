"""After training, on the validation split: the evaluation size, test-time views and temperature to predict with.

Models fine-tuned on random resized crops see objects larger than a centre crop shows them, so
they often score better a little above their training size (FixRes, Touvron et al. 2019); a
mirrored second view adds a little more; one temperature makes the confidences honest (Guo et
al. 2017). Each candidate is scored by validation log loss after its own temperature; a costlier candidate (larger
size, more views) must beat the cheaper ones by MARGIN to be chosen. Where any candidate has under MIN_MISTAKES val
mistakes, its temperature stays 1 (`fit_temperature`: val cannot estimate it) while the others are fitted one that
lowers their loss, so the comparison would favour the candidates with more mistakes (stop 50: digits picked 256 px
at 9 val mistakes over 192 px at none, and lost 3.9 test points); then all are compared before scaling.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample
from imagefit.evaluation.calibration import MIN_MISTAKES, fit_temperature, log_loss, mistakes, view_probabilities
from imagefit.evaluation.priors import choose_adjustment
from imagefit.models.factory import fixed_input_size
from imagefit.prediction.batches import map_batches
from imagefit.prediction.openset import UnknownIndex
from imagefit.prediction.predictors import TorchPredictor
from imagefit.runs import Inference
from imagefit.training.finish_plan import FinishBudget

MARGIN = 0.01  # relative val log loss a costlier candidate must save
SIZE_STEPS = (1.0, 1.15, 1.3)  # evaluation sizes tried, as multiples of the training size


def evaluation_sizes(size: int, *, fixed: bool = False) -> list[int]:
    """The training size and a few larger ones (multiples of 16); only the training size for fixed-size models."""
    if fixed:
        return [size]
    return sorted({size, *(max(size, int(round(size * step / 16)) * 16) for step in SIZE_STEPS)})


def choose_inference(
    model: torch.nn.Module,
    preprocess: Preprocess,
    val: list[Sample],
    classes: list[str],
    *,
    mirror: bool,
    device: str = "cpu",
    budget: FinishBudget | None = None,
    latency: bool = False,
    priors: np.ndarray | None = None,
) -> tuple[Inference, list[dict], dict | None]:
    """The Inference with the lowest val log loss (cost-aware), every candidate's figures, and the logit
    adjustment chosen (None without PRIORS).

    With a BUDGET (a time limit), the first pass (the training size) prices an image, and the budget
    settles which larger sizes and views are still tried. With LATENCY, only the training size is
    measured and one view is chosen (its temperature fitted all the same). With the training class PRIORS
    (imbalance handled by logit adjustment), the shift of the logits (evaluation.priors) is chosen last, on the
    chosen size and views (the logits the run will predict with), and the chosen temperature is fitted again
    with it; the candidates are scored on the plain logits.
    """
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    predictor = TorchPredictor(model, classes, preprocess, device=device)
    index = {name: i for i, name in enumerate(classes)}
    labels = {s.path: index[s.label] for s in val}
    views = allowed = 2 if mirror else 1
    sizes = evaluation_sizes(preprocess.size, fixed=fixed_input_size(model.backbone))[: 1 if latency else None]
    candidates, passes = [], {}
    for size in sizes:
        if candidates and budget is not None and size not in budget.work.sizes:
            break
        started = time.perf_counter()
        sized = dataclasses.replace(preprocess, size=size)
        paths, logits, _ = map_batches(predictor.logits, sized, [s.path for s in val], views=views, average=False)
        if not paths:
            break
        spent = time.perf_counter() - started
        per_view = spent / (len(paths) * views)  # seconds an image a view, decode included
        if budget is not None and budget.work is None:
            allowed = budget.settle(per_image=per_view, spent=spent, sizes=tuple(sizes), views=views).views
        targets = np.array([labels[p] for p in paths])
        passes[size] = (logits, targets)
        candidates += score_views(logits, targets, size, allowed, per_view)
    if not candidates:
        return Inference(preprocess), [], None
    best = candidates[0] if latency else pick(candidates)  # the first: one view at the training size
    best, adjustment = _adjusted(best, *passes[best["size"]], priors) if priors is not None else (best, None)
    chosen = Inference(dataclasses.replace(preprocess, size=best["size"]), best["tta_n"], best["temperature"])
    return chosen, candidates, adjustment


def _adjusted(best: dict, logits: np.ndarray, targets: np.ndarray, priors: np.ndarray) -> tuple[dict, dict]:
    """The logit adjustment chosen on the BEST candidate's views of LOGITS [N, views, C] (decided at its
    temperature), and BEST marked with it: its temperature fitted again on the shifted logits, and their val
    figures."""
    logits = logits[:, : best["tta_n"]]
    adjustment = choose_adjustment(logits, targets, priors, temperature=best["temperature"])
    shifted = logits + np.asarray(adjustment["offsets"], dtype=logits.dtype)
    temperature = fit_temperature(shifted, targets)
    probabilities = view_probabilities(shifted, temperature)
    best.update(
        plain_temperature=best["temperature"],
        temperature=round(temperature, 4),
        val_log_loss_shifted=log_loss(probabilities, targets),
        val_accuracy_shifted=float((probabilities.argmax(1) == targets).mean()),
    )
    return best, adjustment


def score_views(logits: np.ndarray, targets: np.ndarray, size: int, views: int, per_view: float) -> list[dict]:
    """One candidate a view count up to VIEWS at SIZE: its temperature, val log loss (before and after), accuracy,
    mistakes before scaling (under MIN_MISTAKES, the temperature stays 1) and its images/s on this machine (the val
    pass's measured PER_VIEW seconds times its views)."""
    candidates = []
    for count in range(1, views + 1):
        chosen = logits[:, :count]
        temperature = fit_temperature(chosen, targets)
        probabilities = view_probabilities(chosen, temperature)
        plain = view_probabilities(chosen, 1.0)
        candidates.append(
            {
                "size": size,
                "tta_n": count,
                "temperature": round(temperature, 4),
                "val_log_loss": log_loss(probabilities, targets),
                "val_log_loss_before_scaling": log_loss(plain, targets),
                "val_mistakes": mistakes(plain, targets),
                "val_accuracy": float((probabilities.argmax(1) == targets).mean()),
                "images_per_s": round(1.0 / (per_view * count), 1) if per_view > 0 else None,
            }
        )
    return candidates


def pick(candidates: list[dict], key: str | None = None) -> dict:
    """The cheapest candidate unless a costlier one lowers val log loss by more than MARGIN (relative): after each
    one's temperature, or before scaling where any candidate has under MIN_MISTAKES val mistakes (`compared_by`).
    KEY compares by another recorded loss instead (benchmarks replay older rules with it)."""
    key = key or compared_by(candidates)
    ordered = sorted(candidates, key=lambda c: (c["size"] ** 2 * c["tta_n"], c["tta_n"]))
    best = ordered[0]
    for candidate in ordered[1:]:
        if candidate[key] < best[key] * (1 - MARGIN):
            best = candidate
    return best


def compared_by(candidates: list[dict]) -> str:
    """The val log loss the candidates are compared by: after their temperatures when each was fitted one, else
    before scaling (a temperature held at 1 beside fitted ones is no common footing)."""
    fitted = all(c["val_mistakes"] >= MIN_MISTAKES for c in candidates)
    return "val_log_loss" if fitted else "val_log_loss_before_scaling"


def describe(inference: Inference, candidates: list[dict], train_size: int) -> str:
    """One line for the console: what was chosen and what it bought on val."""
    chosen = next(c for c in candidates if (c["size"], c["tta_n"]) == (inference.preprocess.size, inference.tta_n))
    plain = next(c for c in candidates if (c["size"], c["tta_n"]) == (train_size, 1))
    views = "image + mirror" if inference.tta_n == 2 else "one view"
    return (
        f"prediction: {inference.preprocess.size} px ({train_size} in training), {views}, temperature "
        f"{inference.temperature:.2f}; val log loss {plain['val_log_loss_before_scaling']:.3f} -> "
        f"{chosen['val_log_loss']:.3f}, accuracy {plain['val_accuracy']:.4f} -> {chosen['val_accuracy']:.4f} "
        f"(chosen on val){_speed(chosen, plain)}{_shifted(chosen)}"
    )


def _shifted(chosen: dict) -> str:
    """'; with the imbalance shift: ...' where the chosen candidate predicts with a logit adjustment, else ''."""
    if "val_log_loss_shifted" not in chosen:
        return ""
    return (
        f"; with the imbalance shift: val log loss {chosen['val_log_loss_shifted']:.3f}, accuracy "
        f"{chosen['val_accuracy_shifted']:.4f}"
    )


def _speed(chosen: dict, plain: dict) -> str:
    """'; 41 images/s against 80 for the plain view' (measured on val), or '' for candidates without a rate."""
    if not chosen.get("images_per_s") or not plain.get("images_per_s"):
        return ""
    if chosen is plain:
        return f"; {chosen['images_per_s']:.0f} images/s"
    return f"; {chosen['images_per_s']:.0f} images/s against {plain['images_per_s']:.0f} for the plain view"


def fit_unknown(
    model: torch.nn.Module,
    inference: Inference,
    train: list[Sample],
    val: list[Sample] | None,
    classes: list[str],
    *,
    device: str = "cpu",
    seed: int = 0,
    size: int = 0,
) -> tuple[UnknownIndex, dict]:
    """The unknown-image index from (up to SIZE, else INDEX_SIZE) training embeddings, its threshold set on val; and
    its config.json facts.

    With no val (a refit on train + val), the threshold comes from the index's own leave-one-out scores.
    """
    from imagefit.prediction.openset import FALSE_ALARM, INDEX_SIZE, build_index, threshold_for
    from imagefit.runs.files import UNKNOWN_INDEX

    model = model.eval().to(device=device, memory_format=torch.channels_last)
    predictor = TorchPredictor(model, classes, inference.preprocess, device, inference.temperature, inference.tta_n)
    chosen, size = train, size or INDEX_SIZE
    if len(train) > size:  # sampled before the pass: the index never holds more
        keep = np.sort(np.random.default_rng(seed).choice(len(train), size=size, replace=False))
        chosen = [train[i] for i in keep]
    count = len(classes)

    def embeddings(samples: list[Sample]) -> np.ndarray:
        paths, out, _ = map_batches(
            predictor.with_embeddings, inference.preprocess, [s.path for s in samples], views=inference.tta_n
        )
        return out[:, count:] if paths else np.zeros((0, 1), dtype=np.float32)

    index = build_index(embeddings(chosen), seed=seed)
    index.threshold = threshold_for(index.scores(embeddings(val)) if val else index.own_scores())
    facts = {
        "score": "knn",
        "neighbour": index.neighbour,
        "threshold": index.threshold,
        "false_alarm": FALSE_ALARM,
        "index": UNKNOWN_INDEX,
        "index_size": len(index.embeddings),
    }
    return index, facts
