"""--time-limit: the plan fits the limit, shrinks what it must, and the run ends within the limit."""

import time

import pytest
from conftest import TINY, make_class_folders
from rich.console import Console

import imagefit
from imagefit.config import Recipe, parse_duration
from imagefit.errors import UserError
from imagefit.training.budget import Rates, apply_plan, fit_plan

COUNTS = {"train": 1000, "val": 100, "test": 100}
RATES = Rates(train=20.0, infer=100.0)


def _plan(limit: float, *, rates: Rates = RATES, views: int = 3, wanted: int = 7, **options):
    settings = dict(spent=10.0, size=192, counts=COUNTS, head_on_features=True, report=True, frozen_epochs=3)
    return fit_plan(limit, views=views, wanted=wanted, rates=rates, **{**settings, **options})


def test_plan_charges_features_epochs_and_finish_against_the_limit():
    plan = _plan(1000.0)
    # features: 1.1 * (1000 * 3 / 100 + 100 / 100) = 34.1 s; finish: 1.1 * 200 / 100 + 15 = 17.2 s;
    # one epoch: 1.1 * (1000 / 20 + 100 / 100) + 1 = 57.1 s; (1000 - 10 - 34.1 - 17.2) / 57.1 = 16.4
    assert plan.feature_seconds == pytest.approx(34.1)
    assert plan.finish_seconds == pytest.approx(17.2)
    assert plan.epoch_seconds == pytest.approx(57.1)
    assert plan.fine_tune_epochs == 7, "never more epochs than the recipe asks for"
    assert _plan(400.0).fine_tune_epochs == 5  # (400 - 61.3) / 57.1 = 5.9
    assert plan.deadline == pytest.approx(1000 - 17.2 - 1.0), "finish and one last validation (100 / 100 s)"


def test_decode_time_adds_on_a_cpu_and_overlaps_on_a_gpu():
    cpu = _plan(1000.0, rates=Rates(train=20.0, infer=100.0, prep_train=0.01, prep_eval=0.002))
    # one epoch: 1.1 * (1000 * (0.01 + 1 / 20) + 100 * (0.002 + 1 / 100)) + 1 = 68.32 s
    assert cpu.epoch_seconds == pytest.approx(68.32)
    gpu = _plan(
        1000.0, rates=Rates(train=20.0, infer=100.0, prep_train=0.01, prep_eval=0.002, overlapped=True, workers=4)
    )
    # the model (1 / 20 s an image) is slower than 4 workers (0.01 / 4): 1.1 * (50 + 1) + 1
    assert gpu.epoch_seconds == pytest.approx(57.1)


def test_short_limit_drops_augmented_views_then_epochs():
    plan = _plan(50.0)
    assert plan.head_views < 3 and plan.fine_tune_epochs == 0
    recipe = apply_plan(Recipe().override(epochs=10, frozen_epochs=3), plan)
    assert (recipe.schedule.epochs, recipe.schedule.head_views) == (3, plan.head_views)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("", 0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "-5m", "0.0s"])
def test_bad_duration_is_a_user_error(text):
    with pytest.raises(UserError, match="like 90s, 10m or 1.5h"):
        Recipe().override(time_limit=text)


def test_run_with_time_limit_prints_its_plan_and_ends_within_the_limit(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=40)
    console = Console(record=True, width=200)
    limit = 40.0
    started = time.perf_counter()
    run = imagefit.train(
        data,
        out=tmp_path / "run",
        epochs=1000,
        frozen_epochs=1,
        patience=1000,
        time_limit=f"{limit:.0f}s",
        console=console,
        **TINY,
    )
    wall = time.perf_counter() - started
    text = console.export_text()
    assert "time limit 40 s" in text and "plan:" in text, text
    assert 1 < run.recipe.schedule.epochs < 1000, "the plan must cut the 1000 epochs asked for"
    assert wall < limit + 5, f"took {wall:.1f} s for a {limit:.0f} s limit"
    assert (run.path / "model.safetensors").exists() and "val" in run.metrics


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_the_speed_probe_steps_with_batchnorm_as_fine_tuning_will_and_leaves_the_model_as_found(frozen_bn):
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    from imagefit.config import ModelRecipe
    from imagefit.models import build_classifier
    from imagefit.training.rates import measure_rates

    model, _, _ = build_classifier(ModelRecipe(model="test_efficientnet", pretrained=False), 2)
    modes = []
    layer = next(m for m in model.modules() if isinstance(m, _BatchNorm))
    layer.register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rates = measure_rates(model, 32, 4, channels_last=False, device="cpu", frozen_bn=frozen_bn)
    assert rates.train > 0 and rates.infer > 0
    assert modes[:5] == [not frozen_bn] * 5, "2 warm-up and 3 timed training steps"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _budget_after_one_epoch(val_seconds_measured: float):
    """A TimeBudget driven through one fine-tuning epoch of 60 s whose validation took VAL_SECONDS_MEASURED."""
    from datetime import timedelta
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from imagefit.training.deadline import TimeBudget

    clock = _Clock()
    # 600 s from now; finish planned at 90 s and a validation pass at 10 s (probe's rate).
    budget = TimeBudget(clock.now + 600.0, finish=90.0, val=10.0, cap=100, clock=clock, min_part=1.0)  # whole epochs
    timer = Timer(duration=timedelta(seconds=500.0))
    timer.on_train_start(None, None)
    retargeted = []
    trainer = SimpleNamespace(
        current_epoch=0,
        max_epochs=5,
        sanity_checking=False,
        should_stop=False,
        fit_loop=SimpleNamespace(max_epochs=5),
        callbacks=[timer],
    )
    module = SimpleNamespace(retarget=retargeted.append)
    budget.on_train_epoch_start(trainer, module)
    clock.now += 60.0 - val_seconds_measured
    budget.on_validation_epoch_start(trainer, module)
    clock.now += val_seconds_measured
    budget.on_validation_epoch_end(trainer, module)
    budget.on_train_epoch_end(trainer, module)
    return budget, trainer, timer, clock


def test_the_budget_rescales_the_finish_by_the_measured_evaluation_speed_and_moves_lightnings_timer():
    # Validation ran as planned (10 s x REAL_LOOP_FACTOR): the deadline is the plan's, 600 - 100 s.
    planned, trainer, timer, clock = _budget_after_one_epoch(11.0)
    assert planned.scale == pytest.approx(1.0)
    assert planned.deadline == pytest.approx(clock.now - 60.0 + 500.0)
    # 440 s left to the deadline, epochs of 66 s with the loop factor: 6 more epochs, 7 in all.
    assert trainer.fit_loop.max_epochs == 7
    assert timer.time_remaining() == pytest.approx(440.0, abs=1.0)
    # Evaluation ran twice as fast as the probe said: the finish shrinks to half, the deadline moves 50 s later.
    fast, trainer, timer, clock = _budget_after_one_epoch(5.5)
    assert fast.scale == pytest.approx(0.5)
    assert fast.deadline == pytest.approx(planned.deadline + 50.0)
    assert trainer.fit_loop.max_epochs == 8  # 490 s left: 7 more epochs of 66 s
    assert timer.time_remaining() == pytest.approx(490.0, abs=1.0)
    # Slower than planned: the finish grows, so fewer epochs fit.
    slow, trainer, _, _ = _budget_after_one_epoch(22.0)
    assert slow.scale == pytest.approx(2.0) and slow.deadline == pytest.approx(planned.deadline - 100.0)
    assert trainer.fit_loop.max_epochs == 6
    # Never under half the planned finish, however fast one validation pass looks.
    floor, _, _, _ = _budget_after_one_epoch(1.0)
    assert floor.scale == pytest.approx(floor.SMALLEST_SCALE)


def test_the_budget_plans_the_remaining_epochs_at_the_slowest_epochs_pace():
    from types import SimpleNamespace

    from imagefit.training.deadline import TimeBudget

    clock = _Clock()
    budget = TimeBudget(clock.now + 400.0, finish=0.0, val=0.0, cap=100, clock=clock)
    retargeted = []
    trainer = SimpleNamespace(
        current_epoch=0, sanity_checking=False, should_stop=False, fit_loop=SimpleNamespace(max_epochs=9)
    )
    trainer.max_epochs, trainer.callbacks = 9, []
    module = SimpleNamespace(retarget=retargeted.append)
    for seconds in (60.0, 90.0, 50.0):  # the second epoch runs 1.5x the first, the third faster again
        budget.on_train_epoch_start(trainer, module)
        clock.now += seconds
        budget.on_train_epoch_end(trainer, module)
        trainer.current_epoch += 1
    # 200 s left after 3 epochs: at the slowest pace (90 s x 1.1 = 99 s) 2 more fit, 5 in all (the last
    # epoch's 50 s pace would have promised 3 more, and the curve would have been laid for them).
    assert budget.slowest == 90.0
    assert trainer.fit_loop.max_epochs == 5 and retargeted[-1] == 5


def test_the_plan_before_training_gives_the_finish_at_most_its_share_when_optional_work_can_go():
    from imagefit.training.finish_plan import FINISH_SHARE

    def plan(limit: float):
        return _plan(
            limit,
            spent=5.0,
            wanted=60,
            rates=Rates(train=20.0, infer=50.0, prep_eval=0.01),
            counts={"train": 5000, "val": 1000, "test": 1000},
            tune_inference=True,
            unknown_index=True,
        )

    roomy, short = plan(4 * 3600.0), plan(1200.0)
    # the whole finish: 8.3 val passes at the sizes, then val + test + the index priced at 256 px with 2 views
    assert roomy.finish_seconds < FINISH_SHARE * 4 * 3600.0
    assert roomy.finish_seconds > 3 * (1000 + 1000 + 6000) * 0.03 * 1.1, "priced at the dearest candidate"
    assert short.finish_seconds <= FINISH_SHARE * 1200.0 < roomy.finish_seconds


def test_halfway_through_an_epoch_the_budget_shortens_a_plan_that_no_longer_fits_and_never_lengthens_it():
    from types import SimpleNamespace

    from imagefit.training.deadline import TimeBudget

    said: list[str] = []

    def halfway(seconds_for_half: float) -> tuple[int, list[int]]:
        clock = _Clock()
        budget = TimeBudget(
            clock.now + 400.0, finish=0.0, val=0.0, cap=100, clock=clock, say=said.append, offset=3, min_part=1.0
        )
        retargeted: list[int] = []
        trainer = SimpleNamespace(current_epoch=0, num_training_batches=10, fit_loop=SimpleNamespace(max_epochs=3))
        module = SimpleNamespace(retarget=retargeted.append)
        budget.on_train_epoch_start(trainer, module)
        for index in range(4):  # before the middle: nothing is decided
            budget.on_train_batch_end(trainer, module, None, None, index)
        assert trainer.fit_loop.max_epochs == 3 and not retargeted
        clock.now += seconds_for_half
        budget.on_train_batch_end(trainer, module, None, None, 4)  # the fifth of ten batches: the middle
        return trainer.fit_loop.max_epochs, retargeted

    # Half an epoch took 100 s: this epoch ends at 200 s, and the next (220 s with the loop factor) would end
    # past the 400-second deadline: this epoch is the last, and the curve ends with it.
    assert halfway(100.0) == (1, [1])
    assert said == [
        "time limit: at this epoch's pace 4 epochs fit, not 6: the learning-rate curve now ends with epoch 4"
    ]
    # 50 s a half: 100 s this epoch, then two more of 110 s fit in the 300 s left: the plan of 3 stands.
    assert halfway(50.0) == (3, [])
    # 10 s a half: many more would fit, but a plan is lengthened only at an epoch's end.
    assert halfway(10.0) == (3, [])
    assert len(said) == 1, "nothing is said where the plan stands"


def test_the_epochs_end_does_not_undo_a_cut_its_own_halfway_check_made():
    from types import SimpleNamespace

    from imagefit.training.deadline import TimeBudget

    clock = _Clock()
    budget = TimeBudget(clock.now + 400.0, finish=0.0, val=0.0, cap=100, clock=clock, min_part=1.0)
    retargeted: list[int] = []

    class Trainer(SimpleNamespace):  # as Lightning's: max_epochs is the fit loop's
        max_epochs = property(lambda self: self.fit_loop.max_epochs)

    trainer = Trainer(current_epoch=0, num_training_batches=10, sanity_checking=False, should_stop=False, callbacks=[])
    trainer.fit_loop = SimpleNamespace(max_epochs=5)
    module = SimpleNamespace(retarget=retargeted.append)
    budget.on_train_epoch_start(trainer, module)
    clock.now += 60.0  # a slow first half (the loader starting): 120 s an epoch, then 2 more of 132 s fit
    budget.on_train_batch_end(trainer, module, None, None, 4)
    assert trainer.fit_loop.max_epochs == 3 and retargeted == [3]
    clock.now += 10.0  # the second half ran fast: at 70 s an epoch, 4 more would fit in the 330 s left
    budget.on_train_epoch_end(trainer, module)
    assert trainer.fit_loop.max_epochs == 3 and retargeted == [3], "the cut stands at this epoch's end"
    trainer.current_epoch = 1
    budget.on_train_epoch_start(trainer, module)
    clock.now += 35.0  # no cut at this epoch's middle: 70 s an epoch
    budget.on_train_batch_end(trainer, module, None, None, 4)
    clock.now += 35.0
    budget.on_train_epoch_end(trainer, module)  # 260 s left at 77 s an epoch: 3 more
    assert trainer.fit_loop.max_epochs == 5 and retargeted == [3, 5], "a later epoch's end may lengthen it again"
