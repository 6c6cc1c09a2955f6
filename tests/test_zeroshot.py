"""imagefit zero-shot through open_clip, end to end with a tiny randomly initialised CLIP (no weights here)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders

from imagefit.errors import UserError
from imagefit.zeroshot import class_names, load_zero_shot, zero_shot

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
