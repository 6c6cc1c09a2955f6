"""The two-phase learning-rate curve and the optimizer's parameter groups."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class PhaseSchedule:
    """Learning-rate factor per optimizer step for the two-phase recipe.

    Phase 1 (head only) decays from 1 to `finetune_ratio` on a cosine; phase 2 (whole network)
    warms up linearly to `finetune_ratio`, then decays on a cosine to `final_ratio` of that.
    """

    frozen_steps: int
    total_steps: int
    warmup_steps: int
    finetune_ratio: float
    final_ratio: float = 0.01

    def __call__(self, step: int) -> float:
        if step < self.frozen_steps:
            progress = step / max(1, self.frozen_steps)
            return self.finetune_ratio + (1 - self.finetune_ratio) * _cosine(progress)
        step -= self.frozen_steps
        if step < self.warmup_steps:
            return self.finetune_ratio * (step + 1) / (self.warmup_steps + 1)
        remaining = max(1, self.total_steps - self.frozen_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / remaining)
        return self.finetune_ratio * (self.final_ratio + (1 - self.final_ratio) * _cosine(progress))


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: weights with decay; norms, biases and other 1-d parameters without.

    timm's `param_groups_weight_decay` applies the same rule but leaves out parameters that are
    frozen when it runs, and the backbone is frozen before the optimizer is built, so all
    parameters are grouped here: frozen ones have no gradient and the optimizer skips them.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
