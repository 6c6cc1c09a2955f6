"""imagefit lr-find: Lightning's range test on the whole network, a plot and a suggested ratio."""

import csv

import pytest
from conftest import TINY, make_class_folders

from imagefit.training.lr_find import lr_find


def test_the_range_test_plots_and_suggests_a_fine_tuning_ratio(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=20)
    found = lr_find(data, out=tmp_path / "lr.png", steps=40, **TINY)
    assert found.plot.exists() and found.plot.stat().st_size > 1000
    assert found.suggestion is not None and 1e-6 <= found.suggestion <= 1.0
    assert abs(found.ratio - found.suggestion / TINY["lr"]) < 1e-9


def test_lr_auto_is_the_range_test_switch_and_leaves_the_head_rate_alone():
    from imagefit.config import Recipe

    recipe = Recipe().override(lr="auto")
    assert recipe.optim.lr_find and recipe.optim.lr == Recipe().optim.lr
    assert Recipe().override(**{"optim.lr": "0.01"}).optim.lr == 0.01 and not Recipe().optim.lr_find


def test_lr_auto_needs_the_head_trained_first_on_cached_features():
    import pytest

    from imagefit.config import Recipe
    from imagefit.errors import UserError

    with pytest.raises(UserError, match="drop --cached-head false"):
        Recipe().override(lr="auto", cached_head=False)
    assert Recipe().override(lr="auto", cached_head=False, frozen_epochs=0).optim.lr_find


def test_lr_auto_fine_tunes_at_the_range_tests_suggestion_and_records_it(tmp_path):
    import json

    import imagefit
    from imagefit.training.lr_find import LR_FIND_STEPS

    data = make_class_folders(tmp_path / "d", per_class=12)
    run = imagefit.train(
        data, out=tmp_path / "run", report=False, **{**TINY, "lr": "auto", "epochs": 3, "frozen_epochs": 1}
    )
    config = json.loads((run.path / "config.json").read_text())
    facts = config["lr_find"]
    assert facts["steps"] == LR_FIND_STEPS and (run.path / "lr-find.png").stat().st_size > 1000
    optim = config["recipe"]["optim"]
    assert optim["lr_find"] and optim["lr"] == 1e-3
    assert facts["suggestion"] is not None
    assert optim["finetune_lr_ratio"] * optim["lr"] == pytest.approx(facts["suggestion"])
    peak = max(float(row["lr"]) for row in csv.DictReader(open(run.path / "history.csv")) if row["phase"] == "2")
    assert peak <= facts["suggestion"] * 1.0001 and peak > facts["suggestion"] * 0.3

    from imagefit.training.pipeline import refit

    again = json.loads((refit(run.path, out=tmp_path / "refit").path / "config.json").read_text())
    assert not again["recipe"]["optim"]["lr_find"] and "lr_find" not in again  # no second range test
    assert again["recipe"]["optim"]["finetune_lr_ratio"] == optim["finetune_lr_ratio"]  # the source's rate


def test_the_range_test_leaves_the_module_as_it_found_it(tmp_path):
    import torch

    from imagefit.config import Recipe
    from imagefit.data import assign_splits, scan
    from imagefit.data.datamodule import ImageDataModule
    from imagefit.models import build_classifier
    from imagefit.training.lr_find import range_test
    from imagefit.training.module import ClassifierModule
    from imagefit.training.schedule import early_layers

    data = make_class_folders(tmp_path / "d", per_class=10)
    recipe = Recipe().override(**{**TINY, "micro_batch": 4})
    inventory = scan(data)
    samples = assign_splits(inventory.samples, val_split=0.2, test_split=0.0, seed=0, task=inventory.task)
    model, preprocess, _ = build_classifier(recipe.model, len(inventory.classes), classes=inventory.classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    datamodule = ImageDataModule(samples, inventory.classes, preprocess, data=recipe.data, augment=recipe.augment)
    module = ClassifierModule(model, recipe, len(inventory.classes), frozen_epochs=0)
    for parameter in model.backbone.parameters():  # as the head phase leaves it
        parameter.requires_grad_(False)
    seen, modes, step = [], set(), module.training_step

    def training_step(batch, *rest):
        seen.append(len(batch[0]))
        norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        frozen = frozenset(n for n, p in model.named_parameters() if not p.requires_grad)
        modes.add((any(m.training for m in norms), frozen))
        return step(batch, *rest)

    module.training_step = training_step
    range_test(module, datamodule, recipe, out=tmp_path / "lr.png", steps=20)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # Whole batches of 8 (not micro-batches of 4, whose loss Lightning's finder would record alone); the
    # loaders get their micro-batches back afterwards.
    assert max(seen) == 8 and datamodule.recipe.forward_batch == 4
    # Lightning's finder drops the Trainer's callbacks: the module itself trains the network as fine-tuning
    # does, all of it but the early layers of keep_frozen, with BatchNorm statistics kept.
    early = frozenset(f"backbone.{name}" for name in early_layers(model.backbone, recipe.schedule.keep_frozen))
    assert modes == {(False, early)}
