"""`--time-limit`: plan epochs (and, where it must, image size and feature views) from measured throughput.

As Ultralytics' `time`, a time limit overrides the recipe's epochs (an `--epochs` given with it
is a cap). The model's training and inference speed are measured on a few synthetic batches at
the planned size; the plan charges feature extraction, every fine-tuning epoch (training and
validation) and the finish (prediction settings, evaluation, unknown index, report: priced by
`finish_plan` at what each really runs, and shrunk to FINISH_SHARE of the limit) against the
limit. The plan is corrected with measured times: after the feature pass (`replan_epochs`), halfway
through and after every fine-tuning epoch (`training.deadline.TimeBudget`, at the slowest epoch's pace), whose
learning-rate curve is stretched or shrunk to the new end (a last, partial epoch takes what whole epochs leave),
and in the finish, which drops optional work that no longer fits. Lightning's `max_time` stops fine-tuning at the
deadline should an epoch still run long.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

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

# The smallest share of an epoch's training worth a last partial epoch (it still pays a whole validation pass).
MIN_PART = 0.3


def fitted_epochs(done: int, left: float, *, epoch: float, val: float, cap: int, min_part: float = MIN_PART) -> float:
    """Epochs in all (Lightning's counting) when LEFT seconds follow DONE epochs: whole epochs of EPOCH seconds
    (validation included) while they fit, up to CAP, then the share of one more epoch's training that fits beside
    its validation pass (VAL seconds) when it is at least MIN_PART (`--time-limit` spends what whole epochs leave)."""
    whole = max(0, math.floor(left / max(epoch, 1e-3))) if left > 0 else 0
    if done + whole >= cap:
        return float(cap)
    part = (left - whole * epoch - val) / max(epoch - val, 1e-3)
    return done + whole + (min(part, 1.0) if part >= min_part else 0.0)


def last_epoch(epochs: float) -> int:
    """The epoch a plan of EPOCHS (a fraction where the last is partial) ends within: Lightning's `max_epochs`."""
    return math.ceil(epochs - 1e-9)


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


def replan_epochs(plan: TimePlan, *, started: float, wanted: int) -> float:
    """Fine-tuning epochs that fit between now and the deadline at the planned epoch time (after the feature pass):
    a fraction where the last is partial (`fitted_epochs`; the Trainer runs it whole, `TimeBudget` cuts it)."""
    left = started + plan.deadline - time.perf_counter()
    val = REAL_LOOP_FACTOR * plan.val_seconds
    return fitted_epochs(0, left, epoch=plan.epoch_seconds, val=val, cap=max(0, wanted))


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
