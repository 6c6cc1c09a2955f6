"""What the data says before fine-tuning: majority rate, raw-pixel baseline, head; and the floor the summary checks."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample
from imagefit.models.pixels import RawPixels
from imagefit.training.baseline import PIXELS, Measured, Score, majority_rate, pixel_baseline
from imagefit.training.summary import below_a_floor

PRE = Preprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_majority_rate():
    assert majority_rate(["a", "b", "a", "a"]) == 0.75
    assert majority_rate([]) == 0.0


def test_pixel_features_are_the_grey_levels_of_the_image_box_averaged():
    colour = torch.tensor([0.2, 0.6, 1.0]).view(1, 3, 1, 1).expand(2, 3, 64, 64)
    normalised = (colour - 0.5) / 0.5
    features = RawPixels(PRE.mean, PRE.std).thumbnail(normalised)
    assert features.shape == (2, PIXELS * PIXELS)
    torch.testing.assert_close(features, torch.full_like(features, 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0))
    left_dark = torch.ones(1, 3, 64, 64)
    left_dark[..., :32] = -1.0  # black left half, white right half
    grid = RawPixels(PRE.mean, PRE.std).thumbnail(left_dark).view(PIXELS, PIXELS)
    assert grid[:, : PIXELS // 2].max() == 0 and grid[:, PIXELS // 2 :].min() == pytest.approx(1.0)


def _images(folder, rng, *, count: int, informative: bool) -> list[Sample]:
    """Noise images; with INFORMATIVE, class b's left half is brighter (a pattern raw pixels see)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(count):
        label = "ab"[i % 2]
        pixels = rng.integers(0, 120, size=(40, 40), dtype=np.uint8)
        if informative and label == "b":
            pixels[:, :20] += 100
        path = folder / f"{i}.png"
        Image.fromarray(pixels, mode="L").save(path)
        samples.append(Sample(str(path), label, "train"))
    return samples


def test_raw_pixels_separate_what_pixels_show_and_not_what_they_do_not(tmp_path):
    rng = np.random.default_rng(0)
    train = _images(tmp_path / "train", rng, count=60, informative=True)
    val = _images(tmp_path / "val", rng, count=40, informative=True)
    assert pixel_baseline(train, val, PRE) == Score(1.0, 1.0)
    noise_train = _images(tmp_path / "noise-train", rng, count=60, informative=False)
    noise_val = _images(tmp_path / "noise-val", rng, count=40, informative=False)
    assert pixel_baseline(noise_train, noise_val, PRE).accuracy < 0.8
    assert pixel_baseline(train[::2], val, PRE) is None, "one class in train: nothing to fit"


def test_measured_says_what_it_measured():
    measured = Measured(majority=0.7, pixels=Score(0.51, 0.27), head=0.75, shift=0.32)
    assert measured.line() == (
        "measured on val: majority class 0.70, raw pixels 0.51 (balanced 0.27), head on frozen features 0.75"
    )
    assert measured.to_dict() == {
        "majority": 0.7,
        "pixels": {"accuracy": 0.51, "balanced": 0.27},
        "head": 0.75,
        "shift": 0.32,
    }


def _run(val_accuracy: float, measured: dict) -> SimpleNamespace:
    return SimpleNamespace(
        config={"measured": measured}, metrics={"val": {"accuracy": val_accuracy}}, path=Path("no-such-run")
    )


def test_the_summary_warns_when_the_network_is_under_a_floor():
    measured = {"majority": 0.7, "pixels": {"accuracy": 0.8, "balanced": 0.6}}
    assert "raw pixels scored 0.8000 on val, the network 0.7500" in below_a_floor(_run(0.75, measured))
    assert "largest class would score 0.9000" in below_a_floor(_run(0.85, {**measured, "majority": 0.9}))
    assert below_a_floor(_run(0.95, measured)) == ""
    assert below_a_floor(SimpleNamespace(config={}, metrics={"val": {"accuracy": 0.1}})) == "", "an older run"


def test_a_run_records_what_it_measured_before_fine_tuning(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    measured = config["measured"]
    assert set(measured) >= {"majority", "pixels", "head"}
    history = (tiny_run / "history.csv").read_text().splitlines()
    head_last = [line for line in history[1:] if line.split(",")[1] == "1"][-1]
    assert measured["head"] == pytest.approx(float(head_last.split(",")[5]), abs=1e-4)
    assert 0 < measured["majority"] <= 1 and 0 <= measured["pixels"]["accuracy"] <= 1
