"""Fine-tuning kept within `--time-limit` while it runs: after each epoch (and halfway through it) the remaining
epochs are fitted to the deadline from measured times (`imagefit.training.budget` made the plan before)."""

from __future__ import annotations

import math
import time

import lightning as L
from lightning.pytorch.callbacks import Timer

from imagefit.training.budget import REAL_LOOP_FACTOR


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
