"""`--time-limit`: plan epochs (and, where it must, image size and feature views) from measured throughput.

As Ultralytics' `time`, a time limit overrides the recipe's epochs (an `--epochs` given with it
is a cap). The model's training and inference speed are measured on a few synthetic batches at
the planned size; the plan charges feature extraction, every fine-tuning epoch (training and
validation) and the finish (prediction settings, evaluation, unknown index, report: priced by
`finish_plan` at what each really runs, and shrunk to FINISH_SHARE of the limit) against the
limit. The plan is corrected with measured times: after the feature pass (`replan_epochs`), halfway
through and after every fine-tuning epoch (`TimeBudget`, at the slowest epoch's pace), whose
learning-rate curve is stretched or shrunk to the new end, and in the finish, which drops optional work that no longer
fits. Lightning's `max_time` stops fine-tuning at the deadline should an epoch still run long.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import lightning as L
from lightning.pytorch.callbacks import Timer

from imagefit.config import Recipe, parse_duration
from imagefit.data.datamodule import default_workers
from imagefit.data.sources import Sample
from imagefit.models import ImageClassifier, preprocess_for
from imagefit.models.factory import fixed_input_size
from imagefit.prediction.openset import INDEX_SIZE
from imagefit.training.baseline import MOST_TRAIN
from imagefit.training.finish_plan import REPORT_SECONDS, FinishCounts, FinishWork, planned_seconds
from imagefit.training.polish import evaluation_sizes
from imagefit.training.rates import Rates, measure_prep, measure_rates

# Real epochs run a little slower than the measured parts add up to (loader start, checkpoints).
REAL_LOOP_FACTOR = 1.1
EPOCH_OVERHEAD_S = 1.0
SMALLEST_SIZE = 96
MAX_PLANNED_EPOCHS = 60  # fine-tuning epochs a time limit may plan when no --epochs caps it


@dataclass
class TimePlan:
    limit: float
    spent: float
    image_size: int
    head_views: int
    fine_tune_epochs: int
    rates: Rates
    feature_seconds: float
    epoch_seconds: float
    finish_seconds: float
    val_seconds: float = 0.0  # Lightning validates once more after its time limit stops an epoch

    @property
    def deadline(self) -> float:
        """Seconds after the start by which fine-tuning must stop, leaving time for a last validation and the finish."""
        return self.limit - self.finish_seconds - self.val_seconds

    def lines(self) -> list[str]:
        planned = self.spent + self.feature_seconds + self.fine_tune_epochs * self.epoch_seconds + self.finish_seconds
        return [
            f"time limit {_human(self.limit)}: {_human(self.spent)} spent (scan, model, speed probe); "
            f"measured {self.rates.train:.0f} training and {self.rates.infer:.0f} inference images/s "
            f"at {self.image_size} px",
            f"plan: features of {self.head_views} view{'s' if self.head_views > 1 else ''} "
            f"{_human(self.feature_seconds)}, {self.fine_tune_epochs} fine-tuning epoch"
            f"{'s' if self.fine_tune_epochs != 1 else ''} x {_human(self.epoch_seconds)}, evaluation and report "
            f"{_human(self.finish_seconds)}: about {_human(planned)} in all",
        ]


def plan_time(
    recipe: Recipe,
    model: ImageClassifier,
    counts: dict[str, int],
    *,
    samples: list[Sample],
    spent: float,
    head_on_features: bool,
    device: str,
    report: bool,
    epochs_given: bool = False,
) -> TimePlan:
    """The largest plan that fits: as many epochs as fit (up to --epochs when given), then a smaller size, then less."""
    limit = parse_duration(recipe.schedule.time_limit)
    size = recipe.model.image_size
    wanted = recipe.schedule.epochs - recipe.schedule.frozen_epochs if epochs_given else MAX_PLANNED_EPOCHS
    views = recipe.schedule.head_views if head_on_features else 1
    started = time.perf_counter()
    while True:
        rates = _measured_rates(recipe, model, size, samples, device)
        spent_now = spent + (time.perf_counter() - started)
        plan = fit_plan(
            limit,
            spent=spent_now,
            size=size,
            views=views,
            wanted=wanted,
            rates=rates,
            counts=counts,
            head_on_features=head_on_features,
            report=report,
            frozen_epochs=recipe.schedule.frozen_epochs,
            tune_inference=recipe.predict.tune_inference,
            unknown_index=recipe.predict.unknown_index,
            mirror=recipe.augment.hflip,
        )
        smaller = max(SMALLEST_SIZE, int(size * 0.75) // 32 * 32)
        fixed_size = fixed_input_size(model.backbone)  # ViTs are built for one input size
        if plan.fine_tune_epochs >= min(1, wanted) or smaller >= size or fixed_size:
            return plan
        size = smaller


def _measured_rates(recipe: Recipe, model: ImageClassifier, size: int, samples: list[Sample], device: str) -> Rates:
    """The model's training and inference speed at SIZE, and the decode times of SAMPLES."""
    rates = measure_rates(
        model,
        size,
        recipe.data.forward_batch,
        channels_last=recipe.engine.channels_last,
        device=device,
        frozen_bn=not recipe.schedule.finetune_bn,
        keep_frozen=recipe.schedule.keep_frozen,
    )
    preprocess = preprocess_for(model.backbone, size, recipe.model.resize)
    rates.prep_train, rates.prep_eval = measure_prep(samples, preprocess, recipe.augment)
    rates.overlapped, rates.workers = device == "cuda", default_workers(recipe.data.num_workers)
    return rates


def fit_plan(
    limit: float,
    *,
    spent: float,
    size: int,
    views: int,
    wanted: int,
    rates: Rates,
    counts: dict[str, int],
    head_on_features: bool,
    report: bool,
    frozen_epochs: int,
    tune_inference: bool = False,
    unknown_index: bool = False,
    mirror: bool = True,
) -> TimePlan:
    """The plan at one image size: feature views dropped first, then fine-tuning epochs, until it fits."""
    n_train, n_val, n_test = counts.get("train", 0), counts.get("val", 0), counts.get("test", 0)
    full = FinishWork(
        tuple(evaluation_sizes(size)) if tune_inference else (size,),
        2 if tune_inference and mirror else 1,
        INDEX_SIZE if unknown_index else 0,
    )
    finish = planned_seconds(
        full,
        limit=limit,
        per_image=REAL_LOOP_FACTOR * rates.evaluation(1),
        counts=FinishCounts(n_train, n_val, n_test),
        report_seconds=REPORT_SECONDS if report else 0.0,
        choose=tune_inference,
    )
    epoch = REAL_LOOP_FACTOR * (rates.seconds(n_train, rates.prep_train, rates.train) + rates.evaluation(n_val))
    epoch += EPOCH_OVERHEAD_S
    features, views_used = _phase_one(
        rates,
        n_train,
        n_val,
        views=views,
        head_on_features=head_on_features,
        frozen_epochs=frozen_epochs,
        room=limit - spent - finish,
    )
    left = limit - spent - features - finish
    epochs = max(0, min(wanted, math.floor(left / epoch))) if left > 0 else 0
    return TimePlan(limit, spent, size, views_used, epochs, rates, features, epoch, finish, rates.evaluation(n_val))


def _phase_one(
    rates: Rates, n_train: int, n_val: int, *, views: int, head_on_features: bool, frozen_epochs: int, room: float
) -> tuple[float, int]:
    """Seconds of phase 1 and the feature views it keeps: views are dropped while it overflows ROOM."""
    if not head_on_features:  # frozen epochs run through the backbone: forward only (no backward through it)
        frozen = rates.seconds(n_train, rates.prep_train, rates.infer) + rates.evaluation(n_val)
        return frozen_epochs * REAL_LOOP_FACTOR * frozen, 1
    # the raw-pixel baseline after the head (training.baseline): one more decode of its images, no model
    baseline = (min(n_train, MOST_TRAIN) + n_val) * rates.prep_eval

    def feature_pass(view_count: int) -> float:  # one decode, then the plain view and the augmented ones
        per_image = rates.prep_eval + (view_count - 1) * rates.prep_train
        pass_seconds = rates.seconds(n_train, per_image, rates.infer / view_count) + rates.evaluation(n_val)
        return REAL_LOOP_FACTOR * (pass_seconds + baseline)

    views_used, features = views, feature_pass(views)
    while views_used > 1 and features > room:
        views_used -= 1
        features = feature_pass(views_used)
    return features, views_used


def apply_plan(recipe: Recipe, plan: TimePlan) -> Recipe:
    """The recipe with the planned epochs, image size and feature views."""
    return recipe.override(
        epochs=max(1, recipe.schedule.frozen_epochs + plan.fine_tune_epochs),
        image_size=plan.image_size,
        head_views=plan.head_views,
    )


def replan_epochs(plan: TimePlan, *, started: float, wanted: int) -> int:
    """Fine-tuning epochs that fit between now and the deadline at the planned epoch time (after the feature pass)."""
    left = started + plan.deadline - time.perf_counter()
    return max(0, min(wanted, math.floor(left / plan.epoch_seconds))) if left > 0 else 0


class TimeBudget(L.Callback):
    """After each fine-tuning epoch (and halfway through it), fit the remaining epochs to the deadline from measured
    times. The deadline leaves time for the finish and a last validation, planned from the probe's inference rate and
    rescaled by each validation pass's real rate (clothing-small: the probe said 1.4x the real finish). Epochs are
    planned at the slowest epoch's pace (held-back sets: a later epoch ran 1.25x the first), the learning-rate curve
    is retargeted to the new last epoch (`retarget`) and Lightning's `max_time` moved to the new deadline. SAY (when
    given) hears one line when a plan is shortened mid-epoch; OFFSET numbers the epochs as the run does."""

    SMALLEST_SCALE = 0.5  # the finish is never planned at under half the probe's estimate

    def __init__(
        self, end: float, *, finish: float, val: float, cap: int, clock=time.perf_counter, say=None, offset: int = 0
    ):
        self.end = end  # clock() at the time limit
        self.finish = finish  # planned seconds of the finish, at the probe's rate
        self.val = val  # planned seconds of one validation pass, at the probe's rate
        self.cap = cap  # most epochs in all (Lightning's counting)
        self.clock = clock
        self.say, self.offset = say, offset
        self.scale = 1.0  # measured / planned evaluation time
        self.slowest = 0.0  # the slowest fine-tuning epoch so far, validation included (seconds)
        self._started = 0.0
        self._val_started = None
        self._cut = False  # this epoch's halfway check shortened the plan

    @property
    def deadline(self) -> float:
        """clock() by which fine-tuning must stop: the finish and one last validation still fit before the end."""
        return self.end - (self.finish + self.val) * self.scale

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self.clock()
        self._cut = False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_started = None if trainer.sanity_checking else self.clock()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_started is not None and self.val > 0:
            measured = self.clock() - self._val_started
            self.scale = max(self.SMALLEST_SCALE, measured / (REAL_LOOP_FACTOR * self.val))
        self._val_started = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        """Halfway through an epoch, shorten the plan when its pace shows fewer epochs fit, so the curve ends low
        within the epoch that becomes the last (retargeted at its end, that epoch would keep a curve laid for more:
        benchmarks/RESULTS.md). Never lengthens the plan: the epoch's end does that, except after a cut here (the
        two projections differ by the loader's start: hymenoptera's plan went 15, 13, 12, 10)."""
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or batch_idx + 1 != max(1, int(batches) // 2):
            return
        now = self.clock()
        epoch = (now - self._started) * batches / (batch_idx + 1) + self.val * self.scale * REAL_LOOP_FACTOR
        seconds = max(self.slowest, epoch) * REAL_LOOP_FACTOR
        left = self.deadline - (self._started + epoch)  # after this epoch, validation included
        epochs = min(self.cap, trainer.current_epoch + 1 + max(0, math.floor(left / max(seconds, 1e-3))))
        if epochs < trainer.fit_loop.max_epochs:
            if self.say is not None and getattr(trainer, "is_global_zero", True):
                self.say(
                    f"time limit: at this epoch's pace {epochs + self.offset} epochs fit, not "
                    f"{trainer.fit_loop.max_epochs + self.offset}: the learning-rate curve now ends with epoch "
                    f"{epochs + self.offset}"
                )
            trainer.fit_loop.max_epochs = epochs
            pl_module.retarget(epochs)
            self._cut = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = self.clock()
        self.slowest = max(self.slowest, now - self._started)
        seconds = self.slowest * REAL_LOOP_FACTOR  # epochs vary (1.25x on held-back sets): plan at the slowest
        done = trainer.current_epoch + 1
        epochs = min(self.cap, done + max(0, math.floor((self.deadline - now) / max(seconds, 1e-3))))
        if self._cut:  # the halfway check just cut the plan: the epoch's end may shorten it further, not undo it
            epochs = min(epochs, trainer.fit_loop.max_epochs)  # (each change re-lays the learning-rate curve)
        if epochs != trainer.fit_loop.max_epochs and epochs >= done:
            trainer.fit_loop.max_epochs = epochs
            pl_module.retarget(epochs)
        for callback in trainer.callbacks:
            if isinstance(callback, Timer) and callback.time_remaining() is not None:
                # Lightning's Timer has no public setter; `max_time` sets this duration from train start.
                callback._duration = callback.time_elapsed() + max(0.0, self.deadline - now)


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
