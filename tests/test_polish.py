"""What is chosen after training and recorded in the run folder: temperature, evaluation size, test-time views."""

import json
import shutil

import numpy as np
import pytest
from conftest import make_class_folders

import imagefit
from imagefit.evaluation.calibration import (
    HIGHEST,
    LOWEST,
    MIN_MISTAKES,
    cross_fitted_probabilities,
    fit_temperature,
    log_loss,
    view_probabilities,
)
from imagefit.tasks.scores import calibration_error
from imagefit.training.polish import compared_by, evaluation_sizes, pick, score_views


def test_temperature_scaling_lowers_the_calibration_error_of_an_over_confident_model():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, size=2000)
    logits = rng.normal(size=(2000, 5))
    logits[np.arange(2000), targets] += 1.5  # right about 60% of the time ...
    logits *= 6.0  # ... and sure of itself every time
    before = view_probabilities(logits[:, None, :], 1.0)
    temperature = fit_temperature(logits[:, None, :], targets)
    after = view_probabilities(logits[:, None, :], temperature)
    assert temperature > 3, "an over-confident model is cooled down"
    assert calibration_error(targets, after) < calibration_error(targets, before) / 3
    assert (after.argmax(1) == before.argmax(1)).all(), "a temperature never changes the top-1 answer"


def test_a_val_split_without_mistakes_keeps_the_temperature_at_one():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 4, size=60)
    logits = rng.normal(size=(60, 1, 4))
    logits[np.arange(60), 0, targets] += 4.0  # every answer right
    assert (view_probabilities(logits, 1.0).argmax(1) == targets).all()
    assert log_loss(view_probabilities(logits, 0.2), targets) < log_loss(view_probabilities(logits, 1.0), targets)
    assert fit_temperature(logits, targets) == 1.0, "the log loss would run T to zero: T cannot be estimated"
    wrong = np.flatnonzero(targets != 0)[:MIN_MISTAKES]
    logits[wrong, 0, 0] += 9.0  # now MIN_MISTAKES confident mistakes
    fitted = fit_temperature(logits, targets)
    assert fitted != 1.0 and LOWEST <= fitted <= HIGHEST


def test_cross_fitted_probabilities_use_the_temperature_of_the_other_half():
    rng = np.random.default_rng(2)
    targets = rng.integers(0, 3, size=40)
    logits = rng.normal(size=(40, 2, 3)) * 4
    logits[np.arange(40), :, targets] += 1.0
    crossed = cross_fitted_probabilities(logits, targets, seed=5)
    order = np.random.default_rng(5).permutation(40)
    first, second = order[:20], order[20:]
    expected = view_probabilities(logits[second], fit_temperature(logits[first], targets[first]))
    assert np.allclose(crossed[second], expected)
    assert not np.allclose(crossed, view_probabilities(logits, fit_temperature(logits, targets)))


def test_evaluation_sizes_and_the_cheapest_good_candidate():
    assert evaluation_sizes(192) == [192, 224, 256]
    assert evaluation_sizes(224, fixed=True) == [224]
    candidates = [
        {"size": 192, "tta_n": 1, "val_log_loss": 0.500, "val_mistakes": 9},
        {"size": 224, "tta_n": 1, "val_log_loss": 0.497, "val_mistakes": 9},  # under MARGIN better: not worth its cost
        {"size": 192, "tta_n": 2, "val_log_loss": 0.450, "val_mistakes": 8},
    ]
    assert (pick(candidates)["size"], pick(candidates)["tta_n"]) == (192, 2)


def test_a_candidate_without_mistakes_is_not_beaten_by_one_whose_mistakes_bought_it_a_temperature():
    # Stop 50's digits: at the training size no val mistake, so T stays 1 and the loss is that of modest
    # confidence; at a larger size 5 mistakes, all sure (over-confident), so a fitted temperature gives a lower loss.
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, size=100)
    clean = np.zeros((100, 1, 3))
    clean[np.arange(100), 0, targets] = 1.5
    sharp = np.zeros((100, 1, 3))
    sharp[np.arange(100), 0, targets] = 12.0
    wrong = np.arange(5)
    sharp[wrong, 0, targets[wrong]] = 0.0
    sharp[wrong, 0, (targets[wrong] + 1) % 3] = 12.0
    candidates = score_views(clean, targets, 192, 1, 0.01) + score_views(sharp, targets, 256, 1, 0.01)
    assert [c["val_mistakes"] for c in candidates] == [0, 5]
    assert candidates[0]["temperature"] == 1.0 and candidates[1]["temperature"] != 1.0
    assert candidates[1]["val_log_loss"] < candidates[0]["val_log_loss"], "after the temperatures, 256 px looks better"
    assert compared_by(candidates) == "val_log_loss_before_scaling"
    assert pick(candidates)["size"] == 192 and pick(candidates)["temperature"] == 1.0
    fitted = [{**c, "val_mistakes": MIN_MISTAKES} for c in candidates]  # had both been fitted: compared after them
    assert compared_by(fitted) == "val_log_loss" and pick(fitted)["size"] == 256


def test_evaluate_predict_and_onnx_give_the_same_probabilities_with_the_recorded_settings(tiny_run, tmp_path):
    from imagefit.evaluation.evaluator import evaluate, read_predictions
    from imagefit.export.onnx import export_onnx
    from imagefit.prediction.loading import predict

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["inference"] = {**config["inference"], "tta_n": 2, "temperature": 2.5}
    config["inference"]["preprocess"]["size"] = 48  # larger than the 32 px of training
    (run_dir / "config.json").write_text(json.dumps(config))
    (result,) = evaluate(run_dir, split="val")
    assert (result.metrics["image_size"], result.metrics["tta_n"], result.metrics["temperature"]) == (48, 2, 2.5)
    rows, classes = read_predictions(run_dir / "predictions-val.csv")
    evaluated = np.array([[float(row[c]) for c in classes] for row in rows])
    paths = [row["path"] for row in rows]
    torch_probabilities = predict(run_dir, paths).probabilities
    onnx_probabilities = predict(export_onnx(run_dir, out=tmp_path / "m.onnx"), paths).probabilities
    np.testing.assert_allclose(torch_probabilities, evaluated, atol=1e-4)
    np.testing.assert_allclose(onnx_probabilities, torch_probabilities, atol=1e-4)
    assert (onnx_probabilities.argmax(1) == torch_probabilities.argmax(1)).all()
    plain = predict(run_dir, paths, tta=False).probabilities
    assert not np.allclose(plain, torch_probabilities, atol=1e-3), "the recorded settings really are applied"


def test_a_trained_run_records_what_it_chose_and_why(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    assert set(config["inference"]) == {"preprocess", "tta_n", "temperature"}
    sizes = {c["size"] for c in config["inference_candidates"]}
    assert sizes == {32, 48} and config["inference"]["preprocess"]["size"] in sizes
    rates = {(c["size"], c["tta_n"]): c["images_per_s"] for c in config["inference_candidates"]}
    assert all(rate > 0 for rate in rates.values()), "each setting's measured cost is kept beside its gain"
    for (size, views), rate in rates.items():
        if views == 2:  # a second view costs a second pass of the model
            assert rate < rates[(size, 1)]


def test_latency_chooses_one_view_at_the_training_size_and_still_records_the_mirror(tmp_path):
    from conftest import TINY

    data = make_class_folders(tmp_path / "colours", per_class=10)
    run = imagefit.train(data, out=tmp_path / "run", epochs=2, frozen_epochs=1, latency=True, report=False, **TINY)
    config = json.loads((run.path / "config.json").read_text())
    assert config["inference"]["tta_n"] == 1 and config["inference"]["preprocess"]["size"] == TINY["image_size"]
    assert {(c["size"], c["tta_n"]) for c in config["inference_candidates"]} == {(32, 1), (32, 2)}


def test_the_prediction_line_says_the_cost_beside_the_gain():
    from imagefit.data.preprocess import Preprocess
    from imagefit.runs import Inference
    from imagefit.training.polish import describe

    plain = {"size": 32, "tta_n": 1, "val_log_loss": 0.5, "val_log_loss_before_scaling": 0.6, "val_accuracy": 0.8}
    mirror = {**plain, "tta_n": 2, "val_log_loss": 0.4, "val_accuracy": 0.85}
    inference = Inference(Preprocess(size=32, mean=(0.5,) * 3, std=(0.5,) * 3), 2, 1.0)
    line = describe(inference, [plain | {"images_per_s": 80.0}, mirror | {"images_per_s": 40.0}], 32)
    assert line.endswith("; 40 images/s against 80 for the plain view")
    assert "images/s" not in describe(inference, [plain, mirror], 32), "older runs' candidates carry no rate"


def test_ema_weights_are_the_kept_model_and_load_back_with_the_same_predictions(tmp_path):
    from conftest import TINY
    from safetensors.torch import load_file

    from imagefit.evaluation.evaluator import read_predictions
    from imagefit.prediction.loading import predict

    data = make_class_folders(tmp_path / "d", per_class=12)
    run = imagefit.train(data, out=tmp_path / "run", epochs=4, frozen_epochs=1, ema_epochs=1, report=False, **TINY)
    kept = load_file(run.path / "model.safetensors")
    import torch

    best = torch.load(run.path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    current = {k.removeprefix("model."): v for k, v in best["current_model_state"].items() if k.startswith("model.")}
    averaged = {k.removeprefix("model."): v for k, v in best["state_dict"].items() if k.startswith("model.")}
    name = "head.1.weight"
    assert not torch.allclose(current[name], averaged[name]), "the average differs from the last step's weights"
    expected = load_file(run.path / "head-only.safetensors") if run.metrics["best_epoch"] == 1 else averaged
    torch.testing.assert_close(kept[name], expected[name])
    rows, classes = read_predictions(run.path / "predictions-val.csv")
    again = predict(run.path, [row["path"] for row in rows]).probabilities
    np.testing.assert_allclose(again, [[float(row[c]) for c in classes] for row in rows], atol=1e-5)


# the defaults (3 frozen + 7 fine-tuning epochs, EMA over 2); a time limit that leaves 4 or 3; EMA off; EMA over 1
EMA_CASES = [({}, True), ({"epochs": 7}, True), ({"epochs": 6}, False), ({"ema_epochs": 0}, False),
             ({"ema_epochs": 1, "epochs": 5}, True)]  # fmt: skip


@pytest.mark.parametrize(("overrides", "averaged"), EMA_CASES)
def test_ema_averages_the_runs_with_twice_its_horizon_of_fine_tuning_and_the_soup_takes_the_others(
    tmp_path, overrides, averaged
):
    from imagefit.config import Recipe
    from imagefit.training.callbacks import EMAWeights
    from imagefit.training.engine import build_trainer, ema_applies, soup_applies

    recipe = Recipe().override(accelerator="cpu", devices="1", soup=True, **overrides)  # 3 frozen epochs
    assert ema_applies(recipe) is averaged and soup_applies(recipe) is not averaged
    trainer, _ = build_trainer(recipe, tmp_path)
    assert any(isinstance(c, EMAWeights) for c in trainer.callbacks) is averaged


@pytest.mark.parametrize("limit", [300.0, 1000.0])
def test_the_plan_is_the_same_for_the_same_measured_rates(limit):
    from imagefit.training.budget import Rates, fit_plan

    def plan():
        return fit_plan(
            limit,
            spent=5.0,
            size=192,
            views=3,
            wanted=60,
            rates=Rates(train=20.0, infer=100.0, prep_train=0.004, prep_eval=0.002),
            counts={"train": 1000, "val": 150},
            head_on_features=True,
            report=True,
            frozen_epochs=3,
            tune_inference=True,
        )

    first, second = plan(), plan()
    assert first == second
    used = first.spent + first.feature_seconds + first.fine_tune_epochs * first.epoch_seconds + first.finish_seconds
    assert used <= limit and limit - used < first.epoch_seconds, "no room left for another epoch"
