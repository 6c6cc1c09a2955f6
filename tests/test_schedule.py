"""The optimizer's parameter groups: weight decay by kind of parameter, and layer-wise learning-rate decay."""

from __future__ import annotations

import pytest

from imagefit.config import ModelRecipe, Recipe
from imagefit.errors import UserError
from imagefit.models import build_classifier
from imagefit.training.schedule import weight_decay_groups


def _model():
    model, _, _ = build_classifier(ModelRecipe(model="test_efficientnet", pretrained=False, image_size=32), 3)
    return model


def test_without_layer_decay_two_groups_hold_every_parameter_at_the_optimizer_rate():
    model = _model()
    groups = weight_decay_groups(model, 0.05, lr=1e-3, layer_decay=1.0)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert all("lr" not in g for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_layer_decay_gives_the_head_the_full_rate_and_the_stem_the_smallest():
    model = _model()
    groups = weight_decay_groups(model, 0.05, lr=1.0, layer_decay=0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(rate) == len(list(model.parameters())), "every parameter in exactly one group"
    head = {rate[id(p)] for p in model.head.parameters()}
    stem = rate[id(model.backbone.conv_stem.weight)]
    last_block = rate[id(next(model.backbone.blocks[-1].parameters()))]
    assert head == {1.0}
    assert stem == min(rate.values()) and stem < last_block < 1.0
    assert all(g["weight_decay"] == 0.0 for g in groups if any(p.ndim <= 1 for p in g["params"]))


@pytest.mark.parametrize("value", [0.0, 1.5])
def test_a_layer_decay_outside_0_to_1_is_one_line(value):
    with pytest.raises(UserError, match="layer_decay"):
        Recipe().override(layer_decay=value)
