"""--quality fast|balanced|best: what each preset trains, the user's options kept, and the ensemble best writes."""

import json

import pytest
from conftest import TINY, make_class_folders

import imagefit
from imagefit import runs
from imagefit.errors import UserError
from imagefit.prediction.ensembles import Ensemble, is_ensemble
from imagefit.training.quality import BEST_MODELS, plan_quality


def test_fast_trains_the_head_alone_unless_the_user_says_otherwise():
    assert plan_quality("fast", {}).overrides == {"epochs": 3, "frozen_epochs": 3}
    assert plan_quality("fast", {"epochs": "5"}).overrides == {"epochs": "5", "frozen_epochs": "5"}
    mine = plan_quality("fast", {"schedule.epochs": 6, "frozen-epochs": 2})
    assert mine.overrides == {"epochs": 6, "frozen_epochs": 2}
    assert "4 fine-tuning (as you set)" in mine.note


def test_balanced_is_the_recipe_unchanged():
    plan = plan_quality("balanced", {"lr": "0.01"})
    assert plan.overrides == {"lr": "0.01"} and plan.models == [] and plan.note == ""


def test_best_shares_the_time_limit_equally_and_deterministically():
    plan = plan_quality("best", {"time_limit": "10m", "seed": 3})
    assert plan.models == list(BEST_MODELS)
    assert plan.overrides == {"time_limit": "190s", "seed": 3}  # 600 s less 5 % for the ensemble, over 3
    assert "3.2 min each of the 10.0 min limit" in plan.note and plan.budget == 570


def test_the_time_a_member_leaves_goes_to_the_members_after_it():
    from imagefit.training.backbones import MEMBER_FLOOR, member_limit

    assert member_limit(570, 0, 3) == 190, "the first member: an equal share"
    assert member_limit(570, 130, 2) == 220, "the second: 60 s the first left, shared by the two left"
    assert member_limit(570, 350, 1) == 220, "the last: all that is left"
    assert member_limit(570, 600, 1) == MEMBER_FLOOR, "over the budget: still time to train and evaluate"
    assert plan_quality("best", {"model": "a,b"}).models == ["a", "b"]


@pytest.mark.parametrize(
    ("quality", "options", "message"),
    [
        ("best", {"model": "convnext_tiny"}, "name two or more"),
        ("quick", {}, "not one of: fast, balanced, best"),
    ],
)
def test_presets_that_cannot_work_are_one_line_errors(quality, options, message):
    with pytest.raises(UserError, match=message):
        plan_quality(quality, options)


def test_fast_writes_a_head_only_run_that_records_its_preset(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=8)
    run = imagefit.train_quality(data, "fast", out=tmp_path / "run", report=False, **{**TINY, "epochs": 2})
    config = json.loads((run.path / "config.json").read_text())
    assert config["quality"] == "fast"
    assert config["recipe"]["schedule"]["frozen_epochs"] == config["recipe"]["schedule"]["epochs"] == 2
    phases = [row.split(",")[1] for row in (run.path / "history.csv").read_text().splitlines()[1:]]
    assert phases == ["1", "1"], "no fine-tuning rows"


def test_best_writes_an_ensemble_of_its_members_that_reads_like_a_run(tmp_path):
    from imagefit.evaluation.evaluator import evaluate

    data = make_class_folders(tmp_path / "d", per_class=10)
    options = {**TINY, "model": "test_efficientnet,test_resnet", "epochs": 2, "frozen_epochs": 1}
    made = imagefit.train_quality(data, "best", runs_dir=tmp_path / "runs", name="dots", report=False, **options)
    assert isinstance(made, Ensemble) and is_ensemble(made.path)
    assert made.path == tmp_path / "runs" / "dots-best"
    assert [m.name for m in made.members] == ["dots-test_efficientnet", "dots-test_resnet"]
    assert made.method == "mean" and made.weights == [0.5, 0.5]
    for member in made.members:
        config = json.loads((member / "config.json").read_text())
        assert config["quality"] == "best"
        assert config["unlabelled"]["images"] == "none", "no member trains students (a competition test/ included)"
    (evaluated,) = evaluate(made.path, split="val")
    assert evaluated.metrics["accuracy"] == pytest.approx(made.metrics["val"]["accuracy"])


def _interrupt_second_member(monkeypatch, where: str):
    """KeyboardInterrupt in test_resnet's (the second member's) WHERE: 'plan' (before its folder holds anything) or
    'fine-tune' (after its head phase); once."""
    from imagefit.training import pipeline

    name = {"plan": "new_plan", "fine-tune": "fine_tune_stage"}[where]
    real, fired = getattr(pipeline, name), []

    def stopped(plan, *args, **kwargs):
        model = plan.recipe.model.model if where == "fine-tune" else args[0].get("model")
        if model == "test_resnet" and not fired:
            fired.append(1)
            raise KeyboardInterrupt
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(pipeline, name, stopped)


@pytest.mark.parametrize("where", ["fine-tune", "plan"])
def test_best_interrupted_in_its_second_member_resumes_to_the_ensemble(tmp_path, monkeypatch, where):
    from imagefit.errors import TrainingInterrupted

    data = make_class_folders(tmp_path / "d", per_class=10)
    options = {**TINY, "model": "test_efficientnet,test_resnet", "epochs": 2, "frozen_epochs": 1}
    first, second = tmp_path / "runs" / "dots-test_efficientnet", tmp_path / "runs" / "dots-test_resnet"
    _interrupt_second_member(monkeypatch, where)
    named = second if where == "fine-tune" else first  # a member with nothing kept: the first carries on
    with pytest.raises(TrainingInterrupted, match=f"--resume {named}`"):
        imagefit.train_quality(data, "best", runs_dir=tmp_path / "runs", name="dots", report=False, **options)
    assert (first / "metrics.json").exists() and not (tmp_path / "runs" / "dots-best").exists()
    weights = runs.RunFiles(first).model.stat().st_mtime_ns
    made = imagefit.train(resume=named, report=False)
    assert isinstance(made, Ensemble) and made.path == tmp_path / "runs" / "dots-best"
    assert [m.name for m in made.members] == [first.name, second.name] and (second / "metrics.json").exists()
    assert runs.RunFiles(first).model.stat().st_mtime_ns == weights, "the first member was not trained again"
    with pytest.raises(UserError, match="nothing to resume"):
        imagefit.train(resume=named, report=False)
