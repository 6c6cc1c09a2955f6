"""Logit adjustment for imbalanced classes: the shift chosen on val, stored with the run, applied at every load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, make_class_folders

import imagefit
from imagefit.evaluation.priors import TAUS, choose_adjustment, class_priors, macro_f1
from imagefit.models.trained import load_trained, shift_logits


def test_priors_are_shares_and_a_class_missing_from_training_counts_half_an_image():
    priors = class_priors(["a"] * 6 + ["b"] * 2, ["a", "b", "c"])
    assert priors == pytest.approx(np.array([6, 2, 0.5]) / 8.5)


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    targets, predicted = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    assert macro_f1(predicted, targets) == pytest.approx(f1_score(targets, predicted, average="macro"))


def test_the_shift_recovers_a_rare_class_a_majority_biased_model_never_calls():
    # The rare class's images score 1 below the majority's logit: only a shift of >= 0.5 x log prior turns them.
    priors = np.array([0.9, 0.1])
    rare = np.array([[1.0, 0.0]] * 5)
    common = np.array([[4.0, 0.0]] * 45)
    logits, targets = np.vstack([rare, common]), np.array([1] * 5 + [0] * 45)
    chosen = choose_adjustment(logits, targets, priors)
    assert chosen["tau"] == 0.5  # the smallest tau that gets every image right
    assert chosen["offsets"] == pytest.approx((-0.5 * np.log(priors)).tolist(), abs=1e-6)
    shifted = (logits + np.array(chosen["offsets"])).argmax(1)
    assert (shifted == targets).all()
    assert [row["tau"] for row in chosen["tried"]] == list(TAUS)
    assert chosen["tried"][0]["val_macro_f1"] < chosen["tried"][2]["val_macro_f1"] == 1.0


def test_balanced_val_keeps_the_plain_logits():
    logits = np.array([[2.0, 0.0], [0.0, 2.0]] * 10)
    chosen = choose_adjustment(logits, np.array([0, 1] * 10), np.array([0.5, 0.5]))
    assert chosen["tau"] == 0.0 and chosen["offsets"] == [0.0, 0.0]


def test_with_two_views_the_shift_is_chosen_on_what_the_predictor_decides():
    # Rare images: the plain view needs tau 0.5, its mirror (margin 2) more; the mean of the two softmaxes
    # turns only at tau 0.75, which the first view alone would never have chosen.
    priors = np.array([0.9, 0.1])
    rare = np.array([[[1.0, 0.0], [2.0, 0.0]]] * 5)
    common = np.array([[[4.0, 0.0], [4.0, 0.0]]] * 45)
    logits, targets = np.concatenate([rare, common]), np.array([1] * 5 + [0] * 45)
    assert choose_adjustment(logits[:, 0], targets, priors)["tau"] == 0.5
    assert choose_adjustment(logits, targets, priors)["tau"] == 0.75


def test_choose_inference_shifts_the_chosen_settings_and_fits_their_temperature_again(tiny_run):
    from imagefit.evaluation.calibration import fit_temperature
    from imagefit.prediction.batches import map_batches
    from imagefit.prediction.predictors import TorchPredictor
    from imagefit.training.polish import choose_inference

    run = imagefit.load_run(tiny_run)
    val = [s for s in run.split() if s.split == "val"]
    priors = np.array([0.8, 0.2])
    model = load_trained(run)
    inference, candidates, adjustment = choose_inference(
        model, run.train_preprocess, val, run.classes, mirror=True, priors=priors
    )
    best = next(c for c in candidates if (c["size"], c["tta_n"]) == (inference.preprocess.size, inference.tta_n))
    assert "plain_temperature" in best and all("plain_temperature" not in c for c in candidates if c is not best)
    predictor = TorchPredictor(model, run.classes, inference.preprocess)
    images = [s.path for s in val]
    paths, logits, _ = map_batches(predictor.logits, inference.preprocess, images, views=2, average=False)
    index = {name: i for i, name in enumerate(run.classes)}
    truth = {s.path: index[s.label] for s in val}
    targets = np.array([truth[p] for p in paths])
    chosen = logits[:, : inference.tta_n]
    expected = choose_adjustment(chosen, targets, priors, temperature=best["plain_temperature"])
    assert adjustment == expected
    shifted = chosen + np.asarray(adjustment["offsets"], dtype=chosen.dtype)
    assert inference.temperature == pytest.approx(fit_temperature(shifted, targets), abs=1e-3)


def test_shift_logits_adds_the_offsets_to_what_the_model_computes(tiny_run):
    run = imagefit.load_run(tiny_run)
    model = load_trained(run)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        before = model(images)
        shift_logits(model, [0.25, -1.5])
        after = model(images)
    assert torch.allclose(after - before, torch.tensor([0.25, -1.5]).expand(3, 2), atol=1e-5)


@pytest.fixture(scope="module")
def adjusted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    data = make_class_folders(root / "d", per_class=5, classes=("red",))
    make_class_folders(data, per_class=20, classes=("blue",))
    return imagefit.train(data, out=root / "run", epochs=2, frozen_epochs=1, report=False, **TINY)


def test_an_imbalanced_run_adjusts_its_logits_on_val_and_every_load_applies_the_shift(adjusted_run):
    from safetensors.torch import load_file

    run = adjusted_run
    assert run.config["imbalance_handling"] == "adjust"
    adjustment = run.config["prior_adjustment"]
    assert adjustment["tau"] in TAUS and len(adjustment["offsets"]) == 2
    stored = load_file(run.files.model)["head.1.bias"]
    loaded = load_trained(run).head[-1].bias.detach()
    assert torch.allclose(loaded - stored, torch.tensor(adjustment["offsets"]), atol=1e-6)


def test_a_class_added_to_an_adjusted_run_keeps_the_shift_once(adjusted_run, tmp_path):
    from imagefit.training.add_class import add_class

    examples = make_class_folders(tmp_path / "ex", per_class=5, classes=("green",), first_seed=900)
    grown = add_class(adjusted_run.path, "green", [examples / "green"], out=tmp_path / "grown")
    assert "prior_adjustment" not in grown.config
    assert grown.config["prior_adjustment_in_weights"] == adjusted_run.config["prior_adjustment"]
    before, after = load_trained(adjusted_run).head[-1].bias, load_trained(grown).head[-1].bias
    assert torch.allclose(after[:2], before, atol=1e-6)


def test_a_refit_of_an_adjusted_run_predicts_with_its_shift(adjusted_run):
    from imagefit.training.pipeline import refit

    done = refit(adjusted_run.path)
    assert done.config["prior_adjustment"] == adjusted_run.config["prior_adjustment"]
    assert done.config["imbalance_handling"] == "adjust"


def test_the_report_names_the_shift_beside_the_handling():
    from imagefit.report.sections import imbalance_fact

    config = {"imbalance_handling": "adjust", "prior_adjustment": {"tau": 0.5, "offsets": [0.1, 1.2]}}
    assert imbalance_fact(config) == "adjust: logits shifted by 0.5 x -log class prior (chosen on val)"
    assert imbalance_fact({"imbalance_handling": "weights"}) == "weights"


def test_without_tuned_prediction_settings_the_shift_is_still_chosen_and_applied(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=5, classes=("red",))
    make_class_folders(data, per_class=20, classes=("blue",))
    run = imagefit.train(
        data, out=tmp_path / "run", epochs=2, frozen_epochs=1, report=False, tune_inference=False, **TINY
    )
    assert "inference" not in run.config, "the prediction settings were not to be tuned"
    adjustment = run.config["prior_adjustment"]
    assert adjustment["tau"] in TAUS and [row["tau"] for row in adjustment["tried"]] == list(TAUS)
    from safetensors.torch import load_file

    stored = load_file(run.files.model)["head.1.bias"]
    loaded = load_trained(run).head[-1].bias.detach()
    assert torch.allclose(loaded - stored, torch.tensor(adjustment["offsets"]), atol=1e-6)
