"""predict --adapt: BatchNorm statistics re-estimated on the predicted images, relative to the training images."""

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from imagefit import runs
from imagefit.errors import UserError
from imagefit.prediction.adapt import (
    LARGE_SHIFT,
    adapt_members,
    adaptable,
    batchnorm_layers,
    predict_adapted,
    reference_moments,
)
from imagefit.prediction.batches import predict_with
from imagefit.prediction.loading import load_predictor, predict
from imagefit.prediction.predictors import TorchPredictor


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run: --adapt caches the training images' moments in the run folder."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def _train_paths(run: Path) -> list[str]:
    return sorted(s.path for s in runs.load_run(run).split() if s.split == "train")


def _dimmed(paths: list[str], into: Path) -> Path:
    """Copies with a third of the contrast and a brighter floor: a shift a camera's settings make."""
    for index, path in enumerate(paths):
        target = into / Path(path).parent.name / f"{index:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").point(lambda v: v // 3 + 150).save(target)
    return into


def _accuracy(predictions) -> float:
    truth = [Path(p).parent.name for p in predictions.paths]
    return float(np.mean([a == b for a, b in zip(predictions.labels, truth, strict=True)]))


def _statistics(predictor) -> list[torch.Tensor]:
    return [t.clone() for layer in batchnorm_layers(predictor.model) for t in (layer.running_mean, layer.running_var)]


def test_the_training_images_themselves_change_nothing(run):
    predictor = load_predictor(run)
    before = _statistics(predictor)
    reference = reference_moments(predictor, batch_size=64)
    # one batch holds every image, so each layer sees exactly the inputs the reference was measured on
    adapt_members([predictor], [reference], _train_paths(run), batch_size=64, threads=0, depth=len(reference.means))
    for old, new in zip(before, _statistics(predictor), strict=True):
        torch.testing.assert_close(new, old, atol=1e-5, rtol=1e-4)
    assert runs.RunFiles(run).batchnorm_reference.exists(), "the training images' moments are measured once and kept"
    predictions = predict_adapted(load_predictor(run), _train_paths(run), tta_n=1, batch_size=64)
    assert predictions.adaptation.shift < 0.01 and predictions.adaptation.layers == 0, "too small a shift to adapt"
    assert "predictions as without --adapt" in predictions.adaptation.line()


def test_a_shifted_set_moves_the_statistics_not_the_weights_and_is_recovered(run, tmp_path):
    paths = _train_paths(run)
    shifted = _dimmed(paths, tmp_path / "dimmed")
    predictor = load_predictor(run)
    weights = {k: v.clone() for k, v in predictor.model.named_parameters()}
    statistics = _statistics(predictor)
    plain = predict(run, [shifted])
    adapted = predict_adapted(predictor, [str(p) for p in sorted(shifted.rglob("*.png"))], tta_n=1, batch_size=64)
    for name, value in predictor.model.named_parameters():
        assert torch.equal(value, weights[name]), f"{name} changed: adapting moves statistics only"
    assert any(not torch.allclose(a, b) for a, b in zip(statistics, _statistics(predictor), strict=True))
    assert adapted.adaptation.shift > LARGE_SHIFT and adapted.adaptation.layers >= 1
    original = predict_with(load_predictor(run), paths, tta_n=1)
    assert _accuracy(adapted) > _accuracy(plain), "adapting recovers what the dimmed copies lost"
    assert _accuracy(adapted) == _accuracy(original)
    assert adapted.adaptation.changed == sum(a != b for a, b in zip(plain.labels, adapted.labels, strict=True))


def test_a_model_without_batchnorm_says_so_and_predicts_as_before(run):
    trained = load_predictor(run)
    model = nn.Module()
    model.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.head = nn.Linear(4, len(trained.classes))
    predictor = TorchPredictor(model, trained.classes, trained.preprocess, run_path=run)
    paths = _train_paths(run)
    predictions = predict_adapted(predictor, paths, tta_n=1, batch_size=8)
    expected = predict_with(predictor, paths, tta_n=1).probabilities  # other batches: float32 rounding apart
    np.testing.assert_allclose(predictions.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert "no BatchNorm layers" in predictions.adaptation.line()


def test_an_exported_model_is_refused_in_one_line():
    onnx_like = SimpleNamespace(classes=["a"], preprocess=None, tta_n=1)  # an OnnxPredictor holds no torch model
    with pytest.raises(UserError, match="needs a run or ensemble folder"):
        adaptable(onnx_like)


def test_the_command_says_the_shift_and_what_changed(run, tmp_path):
    shifted = _dimmed(_train_paths(run)[:6], tmp_path / "dimmed")
    out = tmp_path / "preds.csv"
    result = subprocess.run(
        [sys.executable, "-m", "imagefit.cli", "predict", str(run), str(shifted), "--adapt", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())  # the console's lines, unwrapped
    assert "BatchNorm input shift from the training images" in said and "(large;" in said
    assert "predictions (" in said and out.exists()
