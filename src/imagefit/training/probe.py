"""Far data: a short probe of the fine-tuning rate from the trained head, instead of one rate for every far set.

How far the network must move differs between far datasets: digits (8 px) gained 1.9 points at 0.3 of
`lr` against 0.1, while magnetic tiles collapsed at 1.0 (val accuracy 0.03: the whole network predicted
the rarest class) where 0.3 reached 0.70. The probe runs PROBE_STEPS optimizer steps at each of
PROBE_RATIOS of `lr` from the same start (the trained head), on the same augmented training batches
with the recipe's optimizer, loss, class weights, BatchNorm and frozen layers, and measures the
plain loss on HELD other training images after each. A rate is chosen over a lower one only when it
lowers that loss by more than TIE (relative); a rate that raises it above the start is never chosen.
The weights, the requires-grad flags, the train/eval modes and the random state are as they were after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from timm.optim import create_optimizer_v2

from imagefit.config import Recipe
from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample
from imagefit.data.transforms import eval_transform, train_decode_size, train_transform, transformed
from imagefit.tasks import Task
from imagefit.training.callbacks import keep_batchnorm_statistics
from imagefit.training.schedule import train_as_fine_tuning, weight_decay_groups

PROBE_RATIOS = (0.1, 0.3, 1.0)  # fine-tuning rates tried, as shares of lr
PROBE_STEPS = 8  # optimizer steps at each rate
HELD = 64  # training images (not among the probe's batches) the loss is measured on
TIE = 0.02


@dataclass(frozen=True)
class ProbeResult:
    before: float  # held loss of the trained head
    after: dict[float, float]  # ratio -> held loss after the probe's steps at it

    @property
    def chosen(self) -> float:
        return choose_ratio(self.before, self.after)

    def line(self) -> str:
        tried = ", ".join(f"{ratio:g}x {loss:.3f}" for ratio, loss in sorted(self.after.items()))
        return (
            f"probe: {PROBE_STEPS} steps at each fine-tuning rate from the trained head, held-image loss "
            f"{self.before:.3f} -> {tried}: fine-tuning at {self.chosen:g} of lr"
        )

    def to_dict(self) -> dict:
        return {
            "steps": PROBE_STEPS,
            "before": round(self.before, 4),
            "after": {f"{r:g}": round(v, 4) for r, v in self.after.items()},
            "chosen": self.chosen,
        }


def choose_ratio(before: float, after: dict[float, float], *, tie: float = TIE) -> float:
    """The lowest ratio, unless a higher one lowers the held loss by more than TIE (relative) and stays under BEFORE."""
    ratios = sorted(after)
    best = ratios[0]
    for ratio in ratios[1:]:
        loss = after[ratio]
        if np.isfinite(loss) and loss < before and loss < after[best] * (1 - tie):
            best = ratio
    return best


def probe_batches(
    samples: list[Sample], preprocess: Preprocess, recipe: Recipe, task: Task, classes: list[str], *, seed: int
):
    """The probe's augmented training batches and its HELD plain images, as (images, targets) tensors."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))
    batch = recipe.data.batch_size
    wanted = PROBE_STEPS * batch
    train_views = train_transform(preprocess, recipe.augment)
    plain = eval_transform(preprocess)

    def load(chosen: list[Sample], transform, size: int):
        images, kept = transformed(chosen, transform, min_size=size)
        return torch.stack(images), torch.as_tensor(task.targets([s.label for s in kept], classes))

    picked = [samples[i] for i in order[:wanted]]
    held = [samples[i] for i in order[wanted : wanted + HELD]] or picked[:HELD]
    images, targets = load(picked, train_views, train_decode_size(preprocess, recipe.augment))
    batches = [(images[i : i + batch], targets[i : i + batch]) for i in range(0, len(images), batch)]
    return batches, load(held, plain, preprocess.resize_size)


def probe_rates(
    model: torch.nn.Module,
    recipe: Recipe,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    held: tuple[torch.Tensor, torch.Tensor],
    loss: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor],
    *,
    ratios: tuple[float, ...] = PROBE_RATIOS,
) -> ProbeResult:
    """Held loss before and after PROBE_STEPS steps at each ratio of recipe's lr; MODEL is left as found.

    LOSS(logits, targets, smoothing) is the training loss (class weights inside).
    """
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    flags = [parameter.requires_grad for parameter in model.parameters()]
    modes = [module.training for module in model.modules()]
    random_state = torch.get_rng_state()
    try:
        before = _held_loss(model, held, loss)
        after = {}
        for ratio in ratios:
            model.load_state_dict(state)
            _steps(model, recipe, batches, loss, lr=recipe.optim.lr * ratio)
            after[ratio] = _held_loss(model, held, loss)
        return ProbeResult(before, after)
    finally:
        model.load_state_dict(state)
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)
        for module, mode in zip(model.modules(), modes, strict=True):
            module.training = mode
        torch.set_rng_state(random_state)


def _steps(model, recipe: Recipe, batches, loss, *, lr: float) -> None:
    optim = recipe.optim
    train_as_fine_tuning(model, recipe.schedule.keep_frozen)
    model.train()
    if not recipe.schedule.finetune_bn:
        keep_batchnorm_statistics(model.backbone)
    groups = weight_decay_groups(model, optim.weight_decay, lr=lr, layer_decay=optim.layer_decay)
    optimizer = create_optimizer_v2(groups, opt=optim.optimizer, lr=lr, weight_decay=optim.weight_decay)
    chunk = recipe.data.forward_batch
    for images, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(images), chunk):  # micro batches, gradients accumulated as in fine-tuning
            part = slice(start, start + chunk)
            share = len(images[part]) / len(images)
            (loss(model(images[part]), targets[part], optim.label_smoothing) * share).backward()
        optimizer.step()


@torch.no_grad()
def _held_loss(model, held, loss) -> float:
    model.eval()
    images, targets = held
    return float(loss(model(images), targets, 0.0))
