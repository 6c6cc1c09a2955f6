"""--progressive-size: the first half of fine-tuning at a smaller image size, the rest (and validation) at full."""

import lightning as L
import pytest
from conftest import TINY, make_class_folders

import imagefit
from imagefit.config import Recipe
from imagefit.errors import UserError
from imagefit.training.schedule import progressive_sizes


def test_the_first_half_of_fine_tuning_is_small_and_head_epochs_stay_full():
    sizes = progressive_sizes(192, 0.75, first=0, end=7)
    assert [sizes(e) for e in range(7)] == [144, 144, 144, 192, 192, 192, 192]
    with_head = progressive_sizes(224, 0.5, first=2, end=6)  # two head epochs run in the Lightning loop
    assert [with_head(e) for e in range(6)] == [224, 224, 112, 112, 224, 224]
    assert progressive_sizes(40, 0.5, first=0, end=2)(0) == 32  # never below 32 px


@pytest.mark.parametrize(
    ("options", "message"),
    [({"progressive_size": 1.5}, "from 0.25 to below 1"), ({"progressive_size": 0.75, "time_limit": "5m"}, "one of")],
)
def test_sizes_it_cannot_use_are_one_line_errors(options, message):
    with pytest.raises(UserError, match=message):
        Recipe().override(**options)


class InputSizes(L.Callback):
    def __init__(self):
        self.seen: dict[int, set[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, set()).add(batch[0].shape[-1])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen.setdefault(-1, set()).add(batch[0].shape[-1])


def test_a_run_trains_its_first_fine_tuning_epochs_small_and_validates_at_full_size(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=8)
    sizes = InputSizes()
    options = {**TINY, "image_size": 64, "epochs": 5, "frozen_epochs": 1, "progressive_size": 0.5}
    run = imagefit.train(data, out=tmp_path / "run", report=False, callbacks=[sizes], **options)
    assert sizes.seen == {0: {32}, 1: {32}, 2: {64}, 3: {64}, -1: {64}}
    assert run.recipe.schedule.progressive_size == 0.5
