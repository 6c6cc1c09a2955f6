"""imagefit ensemble: weights fitted on the shared val split, an ensemble folder that works like a run folder."""

import json

import numpy as np
import pytest
from conftest import TINY, make_class_folders

import imagefit
from imagefit.errors import UserError
from imagefit.evaluation.calibration import log_loss
from imagefit.evaluation.ensembles import fit_weights, make_ensemble
from imagefit.prediction.ensembles import load_ensemble


def test_weighted_weights_are_never_worse_on_val_than_the_best_member():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 3, size=200)
    members = []
    for noise in (0.8, 1.5, 3.0):
        logits = rng.normal(scale=noise, size=(200, 3))
        logits[np.arange(200), targets] += 1.0
        members.append(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
    stacked = np.stack(members)
    best = min(log_loss(p, targets) for p in stacked)
    for method in ("weighted", "greedy"):
        weights = fit_weights(stacked, targets, method)
        assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
        assert log_loss(np.tensordot(weights, stacked, axes=1), targets) <= best + 1e-12


def test_an_ensemble_folder_works_like_a_run_folder(two_runs, tmp_path):
    from imagefit.evaluation.evaluator import evaluate
    from imagefit.export.onnx import export_onnx
    from imagefit.prediction.loading import predict

    ensemble = make_ensemble(list(two_runs), out=tmp_path / "ens", method="weighted")
    metrics = ensemble.metrics
    members_val = [json.loads((run / "metrics.json").read_text())["val"]["log_loss"] for run in two_runs]
    assert metrics["val"]["log_loss"] <= min(members_val) + 1e-6, "never worse on val log loss than its best member"
    (evaluated,) = evaluate(ensemble.path, split="val")
    assert evaluated.metrics["accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    paths = [s.path for s in ensemble.split() if s.split == "val"]
    torch_probabilities = predict(ensemble.path, paths).probabilities
    onnx_probabilities = predict(export_onnx(ensemble.path), paths).probabilities
    np.testing.assert_allclose(onnx_probabilities, torch_probabilities, atol=1e-4)
    assert "gain over the best member" in imagefit.write_report(ensemble.path).read_text()


def test_members_with_other_labels_are_refused_in_one_line(two_runs, tmp_path):
    other = make_class_folders(tmp_path / "o", per_class=6, classes=("cat", "dog"))
    odd = imagefit.train(other, out=tmp_path / "odd", epochs=1, report=False, **TINY)
    with pytest.raises(UserError, match="ensemble members must share their labels"):
        make_ensemble([two_runs[0], odd.path], out=tmp_path / "ens")


def test_members_validated_on_other_images_are_refused_in_one_line(two_runs, tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=14, classes=("red", "blue", "green"))
    other_split = imagefit.train(data, out=tmp_path / "seed7", epochs=1, seed=7, report=False, **TINY)
    with pytest.raises(UserError, match="was validated on other images than .* must share their split"):
        make_ensemble([two_runs[0], other_split.path], out=tmp_path / "ens")


def test_commands_that_take_one_run_name_the_ensembles_members_in_one_line(two_runs, tmp_path):
    from typer.testing import CliRunner

    from imagefit.cli import app

    ensemble = make_ensemble(list(two_runs), out=tmp_path / "ens", method="mean").path
    image = next(s.path for s in load_ensemble(ensemble).split() if s.split == "val")
    for command in (["explain", str(ensemble), image], ["refit", str(ensemble)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert "is an ensemble folder" in result.output and str(two_runs[0]) in result.output.replace("\n", "")
