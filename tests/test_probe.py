"""Far data: the fine-tuning rate probe chooses from measured losses and leaves the model as it found it."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, make_class_folders

import imagefit
from imagefit.config import ModelRecipe, Recipe
from imagefit.models import build_classifier
from imagefit.tasks import task_for
from imagefit.training.probe import PROBE_RATIOS, ProbeResult, choose_ratio, probe_rates


def test_a_higher_rate_is_chosen_only_when_it_lowers_the_held_loss_clearly():
    assert choose_ratio(1.0, {0.1: 0.90, 0.3: 0.80, 1.0: 0.70}) == 1.0
    assert choose_ratio(1.0, {0.1: 0.90, 0.3: 0.80, 1.0: 1.60}) == 0.3, "a rate that diverges is not chosen"
    assert choose_ratio(1.0, {0.1: 0.90, 0.3: 0.89, 1.0: 0.885}) == 0.1, "within 2 %: the lower rate"
    assert choose_ratio(0.5, {0.1: 0.90, 0.3: 0.80, 1.0: 0.70}) == 0.1, "above the start everywhere: the lowest"
    assert choose_ratio(1.0, {0.1: 0.9, 0.3: float("nan"), 1.0: float("inf")}) == 0.1


def test_the_probe_says_and_records_what_it_measured():
    result = ProbeResult(before=1.2, after={0.1: 1.1, 0.3: 0.9, 1.0: 2.0})
    assert result.chosen == 0.3
    assert result.line().endswith("held-image loss 1.200 -> 0.1x 1.100, 0.3x 0.900, 1x 2.000: fine-tuning at 0.3 of lr")
    assert result.to_dict()["after"] == {"0.1": 1.1, "0.3": 0.9, "1": 2.0} and result.to_dict()["chosen"] == 0.3


def _tiny_model_and_data():
    torch.manual_seed(0)
    model, _, _ = build_classifier(ModelRecipe(model="test_efficientnet", pretrained=False, image_size=32), 3)
    images = torch.randn(40, 3, 32, 32)
    targets = torch.arange(40) % 3
    images[targets == 1] += 0.5  # something to learn
    batches = [(images[i : i + 8], targets[i : i + 8]) for i in range(0, 32, 8)]
    return model, batches, (images[32:], targets[32:])


def test_the_probe_leaves_the_weights_flags_modes_and_random_state_exactly_as_they_were():
    model, batches, held = _tiny_model_and_data()
    for parameter in model.backbone.parameters():  # as after the head phase: the backbone frozen, in eval mode
        parameter.requires_grad_(False)
    model.train()
    model.backbone.eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    random_state = torch.get_rng_state()
    task = task_for("single-label")
    result = probe_rates(
        model, Recipe().override(batch_size=8, micro_batch=4), batches, held, lambda x, y, s: task.loss(x, y, None, s)
    )
    assert set(result.after) == set(PROBE_RATIOS)
    assert len(set(result.after.values())) == len(PROBE_RATIOS), "each rate moved the network differently"
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), random_state)


def test_a_far_run_fine_tunes_at_the_rate_its_probe_chose(tmp_path, monkeypatch):
    import imagefit.training.head_stage as head_stage

    monkeypatch.setattr(head_stage, "wants_probe", lambda plan, setup: True)  # the tiny model has no pretraining
    data = make_class_folders(tmp_path / "d", per_class=12)
    run = imagefit.train(data, out=tmp_path / "run", epochs=3, frozen_epochs=1, report=False, **TINY)
    config = json.loads((run.path / "config.json").read_text())
    assert config["probe"]["chosen"] in PROBE_RATIOS
    assert config["recipe"]["optim"]["finetune_lr_ratio"] == config["probe"]["chosen"]
    assert run.recipe.optim.finetune_lr_ratio == config["probe"]["chosen"]


@pytest.mark.parametrize(
    ("shift", "given", "epochs", "expected"),
    [
        (0.3, (), 10, True),
        (0.15, (), 10, False),
        (None, (), 10, False),
        (0.3, ("finetune_lr_ratio",), 10, False),
        (0.3, (), 3, False),
    ],
)
def test_the_probe_runs_on_far_data_with_fine_tuning_to_come_and_the_rate_not_set(shift, given, epochs, expected):
    from imagefit.training.head_stage import wants_probe

    recipe = Recipe().override(epochs=epochs, frozen_epochs=3, probe=True)
    plan = SimpleNamespace(recipe=recipe, given=frozenset(given))
    assert wants_probe(plan, SimpleNamespace(shift=shift)) is expected
    off = SimpleNamespace(recipe=recipe.override(probe=False), given=frozenset(given))
    assert wants_probe(off, SimpleNamespace(shift=shift)) is False, "off by default: it lost on digits"
