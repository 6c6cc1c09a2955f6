"""Adapting to how far the images are from the pretraining photos: measured, said, and the user's options kept."""

import io
from dataclasses import replace

import pytest
from conftest import need_default_weights, shared_path
from rich.console import Console

from imagefit.config import ModelRecipe, Recipe
from imagefit.data import scan
from imagefit.models import build_classifier
from imagefit.training.plan import Plan
from imagefit.training.setup import adapt


def _plan(name: str, given=()) -> Plan:
    need_default_weights()
    samples = [s for s in scan(shared_path(name)).samples][::10][:64]
    return Plan(shared_path(name), Recipe().override(image_size=192), str(name), samples, [], given=frozenset(given))


@pytest.mark.parametrize(("name", "far"), [("digits", True), ("hymenoptera", False)])
def test_far_images_update_batchnorm_and_fine_tune_faster_photos_keep_the_recipe(name, far):
    model, preprocess, _ = build_classifier(ModelRecipe(image_size=192), 2)
    printed = io.StringIO()
    recipe, shift = adapt(_plan(name), model, preprocess, Console(file=printed, width=200))
    assert (shift > 0.22) is far and f"shift {shift:.2f}" in printed.getvalue()
    assert recipe.schedule.finetune_bn is False, "BatchNorm statistics stay: updating them lost everywhere"
    assert recipe.optim.finetune_lr_ratio == (0.3 if far else 0.1)
    assert recipe.model.resize == ("squash" if far else "crop")
    assert recipe.augment.crop_scale == (1.0 if far else 0.35), "far pictures train whole (digits: small too)"
    assert ("far from the pretraining images" in printed.getvalue()) is far


def test_an_option_the_user_set_is_not_adapted():
    model, preprocess, _ = build_classifier(ModelRecipe(image_size=192), 2)
    plan = _plan("digits", given={"finetune_lr_ratio", "resize"})
    recipe, _ = adapt(plan, model, preprocess, Console(file=io.StringIO()))
    assert recipe.optim.finetune_lr_ratio == 0.1 and recipe.model.resize == "crop"


def test_small_images_get_gentler_crops_unless_the_user_chose():
    model, preprocess, _ = build_classifier(ModelRecipe(image_size=192), 2)
    plan = replace(_plan("hymenoptera"), median_side=8)
    assert adapt(plan, model, preprocess, Console(file=io.StringIO()))[0].augment.crop_scale == 0.7
    plan = replace(_plan("hymenoptera", given={"crop_scale"}), median_side=8)
    assert adapt(plan, model, preprocess, Console(file=io.StringIO()))[0].augment.crop_scale == 0.35
