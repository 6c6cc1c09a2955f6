"""BatchNorm statistics re-estimated on training images before the head trains (AdaBN, --recalibrate-bn)."""

from dataclasses import replace

import torch
from conftest import make_class_folders, need_default_weights, shared_path

from imagefit.config import ModelRecipe
from imagefit.data import scan
from imagefit.data.samples import Sample
from imagefit.data.transforms import eval_transform, transformed
from imagefit.models import build_classifier
from imagefit.prediction.moments import batchnorm_layers
from imagefit.training import recalibrate as recalibrate_module
from imagefit.training.distance import FAR_SHIFT, batchnorm_shift
from imagefit.training.recalibrate import recalibrate_batchnorm, recalibration_samples


def _tiny():
    model, preprocess, _ = build_classifier(ModelRecipe(model="test_efficientnet", pretrained=False, image_size=32), 2)
    return model, preprocess


def test_the_first_layer_gets_the_images_own_mean_and_the_weights_and_mode_stay(tmp_path, monkeypatch):
    monkeypatch.setattr(recalibrate_module, "RECALIBRATE_BATCH", 4)  # three equal batches: the mean is exact
    samples = [replace(s, split="train") for s in scan(make_class_folders(tmp_path / "d", per_class=6)).samples]
    model, preprocess = _tiny()
    model.train()
    weights = {n: p.clone() for n, p in model.named_parameters()}
    chosen = recalibration_samples(samples, seed=0)
    assert recalibrate_batchnorm(model.backbone, chosen, preprocess) == 12
    views, _ = transformed(chosen, eval_transform(preprocess), min_size=preprocess.resize_size)
    first = batchnorm_layers(model.backbone)[0]
    with torch.no_grad():
        stem = model.backbone.conv_stem(torch.stack(views))  # the first BatchNorm's input
    assert torch.allclose(first.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters()), "only statistics may move"
    assert model.backbone.training, "the mode the backbone was in is kept"


def test_unreadable_images_leave_the_statistics_as_they_were(tmp_path):
    samples = [
        replace(s, split="train", path=str(tmp_path / "gone.jpg"))
        for s in scan(make_class_folders(tmp_path / "d", per_class=3)).samples
    ]
    model, preprocess = _tiny()
    before = {n: t.clone() for n, t in model.backbone.state_dict().items()}
    assert recalibrate_batchnorm(model.backbone, samples, preprocess) == 0
    assert all(torch.equal(t, before[n]) for n, t in model.backbone.state_dict().items())


def test_the_choice_of_images_is_the_seeds_and_only_training_images():
    samples = [Sample(f"{i:04d}.png", "a", "train" if i % 3 else "val") for i in range(2000)]
    first = recalibration_samples(samples, seed=7)
    assert len(first) == 512 and all(s.split == "train" for s in first)
    assert [s.path for s in first] == [s.path for s in recalibration_samples(samples, seed=7)]


def test_on_far_images_the_shift_falls_below_the_far_threshold():
    need_default_weights()
    samples = [replace(s, split="train") for s in scan(shared_path("digits")).samples[::20][:160]]
    model, preprocess, _ = build_classifier(ModelRecipe(image_size=192), 10)
    views, _ = transformed(samples[:64], eval_transform(preprocess), min_size=preprocess.resize_size)
    before = batchnorm_shift(model.backbone, torch.stack(views))
    recalibrate_batchnorm(model.backbone, recalibration_samples(samples, seed=0), preprocess)
    after = batchnorm_shift(model.backbone, torch.stack(views))
    assert before > FAR_SHIFT > 2 * after, (before, after)
