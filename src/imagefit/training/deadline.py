"""Fine-tuning kept within `--time-limit` while it runs: after each epoch (and halfway through it) the remaining
epochs are fitted to the deadline from measured times (`imagefit.training.budget` made the plan before). Where a
whole epoch no longer fits but most of one does, the last epoch runs the part that fits (`fitted_epochs`)."""

from __future__ import annotations

import math
import time

import lightning as L
from lightning.pytorch.callbacks import Timer

from imagefit.training.budget import MIN_PART, REAL_LOOP_FACTOR, fitted_epochs, last_epoch


class TimeBudget(L.Callback):
    """After each fine-tuning epoch (and halfway through it), fit the remaining epochs to the deadline from measured
    times. The deadline leaves time for the finish and a last validation, planned from the probe's inference rate and
    rescaled by each validation pass's real rate (clothing-small: the probe said 1.4x the real finish). Epochs are
    planned at the slowest epoch's pace (held-back sets: a later epoch ran 1.25x the first), the learning-rate curve
    is retargeted to the new end (`retarget`, in epochs, a fraction where the last epoch is partial) and Lightning's
    `max_time` moved to the new deadline. A partial last epoch stops after its share of batches (Lightning validates
    it as it does an epoch its `max_time` stops). EPOCH (the plan's seconds of one epoch) plans the partial epoch
    before the first has run. SAY (when given) hears one line when a plan is shortened mid-epoch or a partial epoch
    is planned; OFFSET numbers the epochs as the run does; MIN_PART (1 or more: none) as `fitted_epochs`'."""

    SMALLEST_SCALE = 0.5  # the finish is never planned at under half the probe's estimate

    def __init__(
        self,
        end: float,
        *,
        finish: float,
        val: float,
        cap: int,
        clock=time.perf_counter,
        say=None,
        offset: int = 0,
        epoch: float = 0.0,
        min_part: float = MIN_PART,
    ):
        self.end = end  # clock() at the time limit
        self.finish = finish  # planned seconds of the finish, at the probe's rate
        self.val = val  # planned seconds of one validation pass, at the probe's rate
        self.cap = cap  # most epochs in all (Lightning's counting)
        self.clock = clock
        self.say, self.offset = say, offset
        self.epoch, self.min_part = epoch, min_part
        self.scale = 1.0  # measured / planned evaluation time
        self.slowest = 0.0  # the slowest fine-tuning epoch so far, validation included (seconds)
        self.planned: float | None = None  # epochs in all the curve now ends with (a fraction: the last is partial)
        self._started = 0.0
        self._val_started = None
        self._cut = False  # this epoch's halfway check shortened the plan

    @property
    def deadline(self) -> float:
        """clock() by which fine-tuning must stop: the finish and one last validation still fit before the end."""
        return self.end - (self.finish + self.val) * self.scale

    @property
    def _val_seconds(self) -> float:
        return self.val * self.scale * REAL_LOOP_FACTOR

    def _fit(self, done: int, left: float, seconds: float) -> float:
        return fitted_epochs(done, left, epoch=seconds, val=self._val_seconds, cap=self.cap, min_part=self.min_part)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epochs: float, *, quiet: bool = False) -> None:
        """Make the run end after EPOCHS (a fraction: the last epoch runs that share of its batches)."""
        whole = last_epoch(epochs)
        partial = whole != epochs and (self.planned is None or last_epoch(self.planned) != whole)
        if partial and not quiet and self.say is not None and getattr(trainer, "is_global_zero", True):
            self.say(
                f"time limit: epoch {whole + self.offset} runs {epochs - whole + 1:.0%} of its batches, what fits "
                f"before the deadline; the learning-rate curve ends with it"
            )
        trainer.fit_loop.max_epochs = whole
        pl_module.retarget(epochs)
        self.planned = epochs

    def _current(self, trainer: L.Trainer) -> float:
        """Epochs the plan now ends with: the fraction planned here, else the Trainer's whole epochs."""
        return self.planned if self.planned is not None else trainer.fit_loop.max_epochs

    def _stop_batch(self, trainer: L.Trainer) -> int | None:
        """Batches the current epoch runs when it is the plan's partial last epoch."""
        batches = trainer.num_training_batches
        if self.planned is None or not math.isfinite(batches) or trainer.current_epoch + 1 < self.planned:
            return None
        share = self.planned - trainer.current_epoch
        return max(1, round(share * int(batches))) if share < 1 else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Before the first epoch, at the plan's pace: the part of one more epoch that the whole epochs leave."""
        if self.epoch <= 0 or self.min_part >= 1:
            return
        done, planned = trainer.current_epoch, trainer.fit_loop.max_epochs
        epochs = _agreed(trainer, self._fit(done, self.deadline - self.clock(), self.epoch))
        if epochs > done and epochs != planned and planned - 1 <= epochs < planned + 1:
            self._apply(trainer, pl_module, epochs)

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
        """A partial last epoch stops after its share. Halfway through an epoch, shorten the plan when its pace shows
        fewer epochs fit, so the curve ends low within the epoch that becomes the last (retargeted at its end, that
        epoch would keep a curve laid for more: benchmarks/RESULTS.md). Never lengthens the plan: the epoch's end does
        that, except after a cut here (the two projections differ by the loader's start: hymenoptera's plan went 15,
        13, 12, 10)."""
        stop = self._stop_batch(trainer)
        if stop is not None:
            if batch_idx + 1 >= stop:
                trainer.should_stop = True  # Lightning validates, then ends the fit
            return
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or batch_idx + 1 != max(1, int(batches) // 2):
            return
        now = self.clock()
        epoch = (now - self._started) * batches / (batch_idx + 1) + self._val_seconds
        seconds = max(self.slowest, epoch) * REAL_LOOP_FACTOR
        left = self.deadline - (self._started + epoch)  # after this epoch, validation included
        epochs = _agreed(trainer, self._fit(trainer.current_epoch + 1, left, seconds))
        if epochs >= self._current(trainer):
            return
        last = last_epoch(epochs)
        said = last < trainer.fit_loop.max_epochs and self.say is not None
        if said and getattr(trainer, "is_global_zero", True):
            fits = f"{math.floor(epochs) + self.offset}" if last == epochs else f"{epochs + self.offset:.1f}"
            self.say(
                f"time limit: at this epoch's pace {fits} epochs fit, not {trainer.fit_loop.max_epochs + self.offset}: "
                f"the learning-rate curve now ends with epoch {last + self.offset}"
                + ("" if last == epochs else f", which runs {epochs - last + 1:.0%} of its batches")
            )
        self._apply(trainer, pl_module, epochs, quiet=said)
        self._cut = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = self.clock()
        self.slowest = max(self.slowest, now - self._started)
        seconds = self.slowest * REAL_LOOP_FACTOR  # epochs vary (1.25x on held-back sets): plan at the slowest
        done = trainer.current_epoch + 1
        epochs = _agreed(trainer, self._fit(done, self.deadline - now, seconds))
        current = self._current(trainer)
        if self._cut:  # the halfway check just cut the plan: the epoch's end may shorten it further, not undo it
            epochs = min(epochs, current)
        if not trainer.should_stop and epochs != current and epochs >= done:
            self._apply(trainer, pl_module, epochs)
        for callback in trainer.callbacks:
            if isinstance(callback, Timer) and callback.time_remaining() is not None:
                # Lightning's Timer has no public setter; `max_time` sets this duration from train start.
                callback._duration = callback.time_elapsed() + max(0.0, self.deadline - now)


def _agreed(trainer: L.Trainer, epochs: float) -> float:
    """Rank 0's plan on every process of a distributed run (each measures its own clock; all must stop together)."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is None or getattr(trainer, "world_size", 1) <= 1:
        return epochs
    return float(strategy.broadcast(epochs, src=0))
