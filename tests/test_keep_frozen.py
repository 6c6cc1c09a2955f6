"""--keep-frozen: fine-tuning leaves the backbone's first layers (a share of its parameters) frozen."""

import lightning as L
import pytest
import timm
import torch
from conftest import TINY, make_class_folders

import imagefit
from imagefit.config import ModelRecipe, Recipe
from imagefit.errors import UserError
from imagefit.models import build_classifier
from imagefit.training.rates import measure_rates
from imagefit.training.schedule import early_layers

# test_efficientnet has 99,196 backbone parameters: the stem 696 (0.7 %), blocks.0 3,488 (3.5 %),
# blocks.1 10,928 (11 %), blocks.2 24,064 (24 %), then the rest.


def _names(backbone, *prefixes: str) -> set[str]:
    return {name for name, _ in backbone.named_parameters() if name.startswith(prefixes)}


def test_early_layers_are_whole_layers_from_the_input_up_to_the_share():
    backbone = timm.create_model("test_efficientnet", num_classes=0)
    assert early_layers(backbone, 0.0) == []
    assert set(early_layers(backbone, 0.01)) == _names(backbone, "conv_stem.", "bn1.")
    assert set(early_layers(backbone, 0.05)) == _names(backbone, "conv_stem.", "bn1.", "blocks.0.")
    assert set(early_layers(backbone, 0.3)) == _names(backbone, "conv_stem.", "bn1.", "blocks.0.", "blocks.1.")
    assert early_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.5) == [], "no group_matcher: none frozen"


def test_a_share_it_cannot_use_is_a_one_line_error():
    with pytest.raises(UserError, match="keep_frozen must be"):
        Recipe().override(keep_frozen=1.0)


class Trainable(L.Callback):
    """Which backbone parameters train at each fine-tuning step, and the stem's weights before and after."""

    def __init__(self):
        self.flags: list[dict[str, bool]] = []
        self.stem_before = self.stem_after = self.last_before = self.last_after = None

    def on_fit_start(self, trainer, pl_module):
        backbone = pl_module.model.backbone
        self.stem_before = backbone.conv_stem.weight.detach().clone()
        self.last_before = backbone.conv_head.weight.detach().clone()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.phase == 2:
            self.flags.append({n: p.requires_grad for n, p in pl_module.model.backbone.named_parameters()})

    def on_fit_end(self, trainer, pl_module):
        backbone = pl_module.model.backbone
        self.stem_after = backbone.conv_stem.weight.detach().clone()
        self.last_after = backbone.conv_head.weight.detach().clone()


@pytest.mark.parametrize("cached_head", [True, False])
def test_fine_tuning_trains_every_layer_but_the_early_ones(tmp_path, cached_head):
    data = make_class_folders(tmp_path / "d", per_class=6)
    seen = Trainable()
    options = {**TINY, "epochs": 3, "frozen_epochs": 1, "keep_frozen": 0.05, "cached_head": cached_head}
    run = imagefit.train(data, out=tmp_path / "run", report=False, callbacks=[seen], **options)
    frozen = _names(timm.create_model("test_efficientnet", num_classes=0), "conv_stem.", "bn1.", "blocks.0.")
    assert seen.flags, "fine-tuning ran"
    for flags in seen.flags:
        assert {name for name, trains in flags.items() if not trains} == frozen
    assert torch.equal(seen.stem_before, seen.stem_after)
    assert not torch.equal(seen.last_before, seen.last_after)
    assert run.recipe.schedule.keep_frozen == 0.05


@pytest.mark.parametrize(("share", "stem_grads"), [(0.0, 5), (0.05, 0)])
def test_the_speed_probe_leaves_the_early_layers_out_of_the_backward_pass_and_restores_them(share, stem_grads):
    model, _, _ = build_classifier(ModelRecipe(model="test_efficientnet", pretrained=False), 2)
    model.head.requires_grad_(False)  # a state the probe must give back as found
    grads = []
    model.backbone.conv_stem.weight.register_hook(lambda grad: grads.append(1))
    measure_rates(model, 32, 4, channels_last=False, device="cpu", keep_frozen=share)
    assert len(grads) == stem_grads, "2 warm-up and 3 timed steps"
    assert not any(p.requires_grad for p in model.head.parameters())
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_a_run_saved_before_the_field_existed_reads_back_as_it_trained():
    saved = Recipe().to_dict()
    assert saved["schedule"].pop("keep_frozen") == 0.01, "the default"
    assert Recipe.from_dict(saved).schedule.keep_frozen == 0.0, "older runs trained every layer"
    assert Recipe.from_dict(Recipe().override(keep_frozen=0.02).to_dict()).schedule.keep_frozen == 0.02
