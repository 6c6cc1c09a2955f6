"""--time-limit spends what whole epochs leave: the last epoch runs the share of its batches that fits."""

from types import SimpleNamespace

import pytest

from imagefit.training.budget import MIN_PART, fitted_epochs
from imagefit.training.deadline import TimeBudget


@pytest.mark.parametrize(
    ("done", "left", "cap", "expected"),
    [
        (1, 300.0, 100, 4.0),  # 3 whole epochs of 100 s, nothing left for a fourth
        (1, 360.0, 100, 4.556),  # 60 s left: 10 s validation, 50 of the epoch's 90 s of training
        (1, 335.0, 100, 4.0),  # 35 s left: 25 of 90 s of training, under MIN_PART
        (1, 390.0, 100, 4.889),  # 90 s left: 80 of 90 s of training
        (1, 360.0, 4, 4.0),  # the cap (--epochs) ends the plan before the part
        (1, -5.0, 100, 1.0),  # past the deadline: nothing more
        (0, 55.0, 100, 0.5),  # before the first epoch: half of one's training fits
    ],
)
def test_the_epochs_that_fit_end_with_the_part_of_one_that_fits_beside_its_validation(done, left, cap, expected):
    assert fitted_epochs(done, left, epoch=100.0, val=10.0, cap=cap) == pytest.approx(expected, abs=1e-3)
    assert MIN_PART == 0.3


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Trainer(SimpleNamespace):  # as Lightning's: max_epochs is the fit loop's
    max_epochs = property(lambda self: self.fit_loop.max_epochs)


def _trainer(max_epochs: int) -> _Trainer:
    trainer = _Trainer(current_epoch=0, num_training_batches=10, sanity_checking=False, should_stop=False, callbacks=[])
    trainer.fit_loop = SimpleNamespace(max_epochs=max_epochs)
    return trainer


def test_an_epochs_end_plans_a_partial_last_epoch_that_stops_after_its_share_of_batches():
    clock, said = _Clock(), []
    budget = TimeBudget(clock.now + 400.0, finish=0.0, val=0.0, cap=100, clock=clock, say=said.append, offset=3)
    retargeted: list[float] = []
    trainer, module = _trainer(3), SimpleNamespace(retarget=retargeted.append)
    budget.on_train_epoch_start(trainer, module)
    clock.now += 100.0
    budget.on_train_epoch_end(trainer, module)
    # 300 s left at 110 s an epoch: 2 whole epochs (220 s), then 80 s: 73 % of a fourth epoch.
    assert trainer.fit_loop.max_epochs == 4 and retargeted[-1] == pytest.approx(3 + 80 / 110)
    assert said == [
        "time limit: epoch 7 runs 73% of its batches, what fits before the deadline; "
        "the learning-rate curve ends with it"
    ]
    for epoch in (1, 2):  # the whole epochs run every batch
        trainer.current_epoch = epoch
        budget.on_train_epoch_start(trainer, module)
        for index in range(10):
            budget.on_train_batch_end(trainer, module, None, None, index)
        assert not trainer.should_stop
        clock.now += 110.0
        budget.on_train_epoch_end(trainer, module)
    trainer.current_epoch = 3
    budget.on_train_epoch_start(trainer, module)
    for index in range(6):
        budget.on_train_batch_end(trainer, module, None, None, index)
    assert not trainer.should_stop, "six of ten batches: the share (7) is not reached"
    budget.on_train_batch_end(trainer, module, None, None, 6)
    assert trainer.should_stop, "the seventh batch ends the partial epoch"
    assert len(said) == 1


def test_before_the_first_epoch_the_plans_epoch_time_adds_the_part_its_whole_epochs_leave():
    clock = _Clock()
    retargeted: list[float] = []
    budget = TimeBudget(clock.now + 250.0, finish=0.0, val=0.0, cap=100, clock=clock, epoch=100.0)
    trainer = _trainer(2)  # the plan: two whole epochs of 100 s fit in 250 s
    budget.on_train_start(trainer, SimpleNamespace(retarget=retargeted.append))
    assert trainer.fit_loop.max_epochs == 3 and retargeted == [pytest.approx(2.5)]
    unplanned = TimeBudget(clock.now + 250.0, finish=0.0, val=0.0, cap=100, clock=clock)  # no epoch time given
    trainer = _trainer(2)
    unplanned.on_train_start(trainer, SimpleNamespace(retarget=retargeted.append))
    assert trainer.fit_loop.max_epochs == 2 and len(retargeted) == 1
    # the re-plan after the feature pass asked for one epoch where only part of one fits: it is cut to that part
    short = TimeBudget(clock.now + 55.0, finish=0.0, val=0.0, cap=100, clock=clock, epoch=100.0)
    trainer = _trainer(1)
    short.on_train_start(trainer, SimpleNamespace(retarget=retargeted.append))
    assert trainer.fit_loop.max_epochs == 1 and retargeted[-1] == pytest.approx(0.55)


def test_halfway_a_slower_pace_shrinks_the_last_part_or_drops_it():
    def halfway(seconds_for_half: float) -> tuple[int, list[float], bool]:
        clock = _Clock()
        budget = TimeBudget(clock.now + 400.0, finish=0.0, val=0.0, cap=100, clock=clock, epoch=100.0)
        retargeted: list[float] = []
        trainer, module = _trainer(4), SimpleNamespace(retarget=retargeted.append)
        budget.on_train_start(trainer, module)  # 400 s at 100 s an epoch: the plan's 4 whole epochs, no part
        assert trainer.fit_loop.max_epochs == 4 and retargeted == []
        budget.on_train_epoch_start(trainer, module)
        clock.now += seconds_for_half
        budget.on_train_batch_end(trainer, module, None, None, 4)
        return trainer.fit_loop.max_epochs, retargeted, budget._cut

    # 45 s a half: this epoch ends at 90 s, the next ones at 99 s: 3 whole fit in 310 s, and 13 s is no part.
    assert halfway(45.0) == (4, [], False)
    # 55 s a half: 110 s this epoch, then 2 of 121 s (242 s) and 48 s: 40 % of a fourth.
    epochs, retargeted, cut = halfway(55.0)
    assert epochs == 4 and retargeted == [pytest.approx(3 + 48 / 121)] and cut


def test_a_partial_epoch_stops_lightning_mid_epoch_and_is_validated(tmp_path):
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    class Counted(BoringModel):
        def __init__(self):
            super().__init__()
            self.batches, self.validated, self.retargeted = [], [], []

        def training_step(self, batch, batch_idx):
            self.batches.append((self.current_epoch, batch_idx))
            return super().training_step(batch, batch_idx)

        def on_validation_epoch_end(self):
            if not self.trainer.sanity_checking:
                self.validated.append(self.current_epoch)

        def retarget(self, epochs: float) -> None:
            self.retargeted.append(epochs)

    clock = _Clock()
    # 64 batches an epoch (BoringModel); each takes 1 s on this clock, validation 0 s: 160 s hold 2.5 epochs.
    budget = TimeBudget(clock.now + 160.0, finish=0.0, val=0.0, cap=100, clock=clock, epoch=64.0)

    class Tick(L.Callback):
        def on_train_batch_end(self, *args):
            clock.now += 1.0

    model = Counted()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[Tick(), budget],
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model)
    # the plan of 2 epochs grew to 2.5 at train start; the third epoch ran 32 of 64 batches and was validated
    assert model.retargeted[0] == pytest.approx(2.5, abs=0.05)
    assert [epoch for epoch, _ in model.batches].count(2) == round((budget.planned - 2) * 64)
    assert [epoch for epoch, _ in model.batches].count(1) == 64
    assert model.validated == [0, 1, 2]


def test_after_the_feature_pass_a_partial_epoch_is_planned_where_no_whole_one_fits():
    import time

    from imagefit.training.budget import Rates, TimePlan, replan_epochs

    def plan(limit: float) -> TimePlan:  # 100 s epochs, 11 s of them validation; a 50 s finish, a last validation
        return TimePlan(limit, 0.0, 192, 1, 3, Rates(train=1.0, infer=1.0), 0.0, 100.0, 50.0, val_seconds=10.0)

    now = time.perf_counter()
    # 60 s to the deadline (the finish and the last validation come off): no whole epoch, 49 of 89 s of training
    assert replan_epochs(plan(120.0), started=now, wanted=5) == pytest.approx(49 / 89, abs=0.01)
    assert replan_epochs(plan(80.0), started=now, wanted=5) == 0.0, "20 s: not 30 % of an epoch's training"
    assert replan_epochs(plan(400.0), started=now, wanted=5) == pytest.approx(3 + 29 / 89, abs=0.01)
    assert replan_epochs(plan(400.0), started=now, wanted=3) == 3.0, "--epochs caps the plan"
