"""imagefit zero-shot through open_clip, end to end with a tiny randomly initialised CLIP (no weights here)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders

from imagefit.errors import UserError
from imagefit.models.zeroshot import class_names, load_zero_shot
from imagefit.prediction.zeroshot import zero_shot

TINY_CLIP = Path(__file__).with_name("data") / "imagefit-tiny-clip.json"


@pytest.fixture(scope="module", autouse=True)
def tiny_clip():
    import open_clip

    open_clip.add_model_config(str(TINY_CLIP))


def test_zero_shot_runs_end_to_end_with_a_tiny_random_clip(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=3)
    (data / "red" / "notes.jpg").write_text("not a picture")
    predictions = zero_shot([data], ["red apple", "blue sky"], model="imagefit-tiny-clip", pretrained=None)
    assert len(predictions.paths) == 6 and predictions.skipped[0][1] == "not an image"
    assert predictions.probabilities.shape == (6, 2)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_prompts_make_one_direction_per_class(tmp_path):
    scorer = load_zero_shot(["cat", "dog", "bird"], model="imagefit-tiny-clip", pretrained=None)
    assert tuple(scorer.directions.shape) == (3, 32)
    assert np.allclose(scorer.directions.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_fewer_than_two_names_and_missing_weights_are_one_line(monkeypatch):
    with pytest.raises(UserError, match="at least two different names"):
        class_names("cat, cat")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not load CLIP weights ViT-B-32"):
        load_zero_shot(["cat", "dog"], model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(UserError, match="unknown CLIP model 'ViT-B-33'"):
        load_zero_shot(["cat", "dog"], model="ViT-B-33", pretrained=None)


def test_the_command_writes_predictions_and_scores_class_folders(tmp_path):
    import subprocess
    import sys

    data = make_class_folders(tmp_path / "d", per_class=2)
    command = [sys.executable, "-m", "imagefit.cli", "zero-shot", str(data), "--model", "imagefit-tiny-clip"]
    command += ["--model-config", str(TINY_CLIP), "--pretrained", "none", "--out", str(tmp_path / "z.csv")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "accuracy on the 4 labelled images" in result.stderr
    assert (tmp_path / "z.csv").read_text().splitlines()[0] == "Id,Category"


def test_init_clip_builds_the_zero_shot_classifier_from_the_class_names():
    import torch

    from imagefit.config import ModelRecipe
    from imagefit.models import build_classifier

    recipe = ModelRecipe(init="clip", clip_model="imagefit-tiny-clip", pretrained=False, image_size=32)
    torch.manual_seed(0)
    model, preprocess, source = build_classifier(recipe, 3, classes=["cat", "dog", "bird"])
    torch.manual_seed(0)  # the same random CLIP again, for the zero-shot reference
    scorer = load_zero_shot(["cat", "dog", "bird"], model="imagefit-tiny-clip", pretrained=None)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ours = model.eval()(images).softmax(dim=1)
        features = scorer.model.encode_image(images)
        features = features / features.norm(dim=-1, keepdim=True)
        theirs = (scorer.model.logit_scale.exp() * features @ scorer.directions.T).softmax(dim=1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    assert (preprocess.size, source) == (32, "none")


def test_a_run_started_from_clip_trains_predicts_explains_and_exports(tmp_path):
    from conftest import TINY

    import imagefit
    from imagefit.export.onnx import export_onnx
    from imagefit.prediction.gradcam import explain
    from imagefit.prediction.loading import predict

    data = make_class_folders(tmp_path / "d", per_class=10)
    options = {k: v for k, v in TINY.items() if k not in ("model", "image_size")}
    run = imagefit.train(
        data, out=tmp_path / "run", epochs=3, frozen_epochs=1, init="clip", clip_model="imagefit-tiny-clip", **options
    )
    assert run.recipe.model.backbone == "clip:imagefit-tiny-clip" and run.preprocess.size == 32
    assert run.metrics["val"]["accuracy"] >= 0.75, "noisy red and blue are easy, even for a tiny CLIP"
    assert "clip:imagefit-tiny-clip" in (run.path / "report.html").read_text()
    images = [data / "red" / "000.jpg", data / "blue" / "001.jpg"]
    torch_answer = predict(run.path, images)
    onnx_answer = predict(export_onnx(run.path, out=tmp_path / "m.onnx"), images)
    np.testing.assert_allclose(onnx_answer.probabilities, torch_answer.probabilities, atol=1e-4)
    assert len(explain(run.path, images, out_dir=tmp_path / "cam")) == 2


def test_init_clip_offline_without_weights_is_one_line_before_the_data_is_read(tmp_path, monkeypatch):
    import imagefit

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not load CLIP weights ViT-B-32 / laion2b_s34b_b79k"):
        imagefit.train(tmp_path / "no-data-needed", out=tmp_path / "run", init="clip")
    with pytest.raises(UserError, match="unknown CLIP model 'ViT-B-33'"):
        imagefit.train(tmp_path / "no-data-needed", out=tmp_path / "run", init="clip", clip_model="ViT-B-33/x")
    assert not (tmp_path / "run").exists()
