"""Stage `setup`: the model, the recipe adapted to the data and to --time-limit, the loaders and imbalance handling.

Nothing here changes the plan: the adapted recipe comes back in `Setup.recipe`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from rich.console import Console

from imagefit.config import Recipe
from imagefit.data.datamodule import ImageDataModule
from imagefit.data.transforms import eval_transform, transformed
from imagefit.errors import UserError
from imagefit.models import build_classifier, preprocess_for
from imagefit.tasks import task_for
from imagefit.training.budget import TimePlan, apply_plan, plan_time
from imagefit.training.distance import FAR_FINETUNE, FAR_SHIFT, SMALL_CROP_SCALE, SMALL_SIDE, batchnorm_shift
from imagefit.training.engine import on_gpu
from imagefit.training.frozen import head_on_features
from imagefit.training.plan import Plan


@dataclass
class Setup:
    """What a training needs besides the plan: the recipe as adapted, the model, loaders, imbalance handling."""

    recipe: Recipe
    model: torch.nn.Module
    preprocess: object
    weights_source: str
    datamodule: ImageDataModule
    imbalance: str  # 'weights', 'sampler' or 'none'
    class_weights: torch.Tensor | None
    budget: TimePlan | None  # the --time-limit plan of a new run
    shift: float | None = None  # the BatchNorm input shift adapt measured (a new run)


def build_setup(plan: Plan, stage: str, *, planned: bool, console: Console, report: bool) -> Setup:
    """The model (pretrained for a new run), the time plan for a new run with --time-limit, loaders, imbalance."""
    recipe = plan.recipe
    L.seed_everything(recipe.data.seed, workers=True, verbose=False)
    model, preprocess, weights_source = build_classifier(
        recipe.model,
        len(plan.classes),
        pretrained=recipe.model.pretrained and stage == "new",
        classes=plan.classes if stage == "new" else None,  # --init clip: the head from the class names
    )
    if recipe.model.init_weights and stage == "new":
        start_from_run(model, recipe.model.init_weights)
    if recipe.engine.channels_last:  # before anything runs it: DDP needs the same strides in every process
        model = model.to(memory_format=torch.channels_last)
    shift = None
    if recipe.schedule.adapt and recipe.model.pretrained and stage == "new" and not planned:
        recipe, shift = adapt(plan, model, preprocess, console)
        if recipe.model.resize != preprocess.resize:
            preprocess = preprocess_for(model.backbone, preprocess.size, recipe.model.resize)
    budget = None
    if recipe.schedule.time_limit and not planned:
        recipe, preprocess, budget = apply_time_limit(plan, recipe, model, preprocess, console, report)
    mode, weights = _imbalance(plan, recipe, console, planned)
    datamodule = ImageDataModule(
        plan.samples,
        plan.classes,
        preprocess,
        data=recipe.data,
        augment=recipe.augment,
        weighted_sampler=mode == "sampler",
        task=plan.task,
        soft=plan.soft,
    )
    return Setup(recipe, model, preprocess, weights_source, datamodule, mode, weights, budget, shift)


def start_from_run(model: torch.nn.Module, run_dir: str) -> None:
    """Load a run's weights into MODEL (a student starting from its teacher); UserError when they do not fit."""
    from safetensors.torch import load_file

    from imagefit import runs

    weights = runs.RunFiles(Path(run_dir)).model
    if not weights.exists():
        raise UserError(f"init_weights: {weights} does not exist; name a finished run folder")
    try:
        model.load_state_dict(load_file(weights))
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise UserError(f"init_weights: {weights} does not fit this model and its classes ({first})") from None


def _imbalance(plan: Plan, recipe: Recipe, console: Console, planned: bool):
    """How the loss or the sampler meets imbalance ('weights', 'sampler' or 'none'), and the class weights
    (per-label positive weights for a multi-label task)."""
    train_labels = [s.label for s in plan.samples if s.split == "train"]
    found = task_for(plan.task).imbalance(train_labels, plan.classes, recipe.data)
    if found.said and not planned:
        console.print(found.said, highlight=False)
    return found.mode, torch.from_numpy(found.weights) if found.weights is not None else None


def adapt(plan: Plan, model, preprocess, console: Console) -> tuple[Recipe, float | None]:
    """The recipe adapted to how far the images are from the pretraining photos (one line says what and why), and
    the BatchNorm input shift measured (None for a model without BatchNorm)."""
    chosen = [s for s in plan.samples if s.split == "val"][:64] or plan.samples[:64]
    views, _ = transformed(chosen, eval_transform(preprocess), min_size=preprocess.resize_size)
    shift = batchnorm_shift(model.backbone, torch.stack(views)) if views else None
    if shift is None:
        return plan.recipe, None
    far = shift > FAR_SHIFT
    changes = {k: v for k, v in FAR_FINETUNE.items() if k not in plan.given} if far else {}
    small = 0 < plan.median_side <= SMALL_SIDE
    crop_scale = changes.get("crop_scale", plan.recipe.augment.crop_scale)  # far data trains whole pictures
    if small and "crop_scale" not in plan.given and crop_scale < SMALL_CROP_SCALE:
        changes["crop_scale"] = SMALL_CROP_SCALE
    closeness = "far from" if far else "close to"
    measured = f"BatchNorm input shift {shift:.2f} ({closeness} the pretraining images; photos: about 0.15)"
    if small:
        measured += f", images of {plan.median_side} px"
    said = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in changes.items()) or "recipe unchanged"
    console.print(f"adapt: {measured}: {said}", highlight=False)
    return (plan.recipe.override(**changes) if changes else plan.recipe), shift


def apply_time_limit(plan: Plan, recipe: Recipe, model, preprocess, console: Console, report: bool):
    """Plan epochs (and size, views) to fit --time-limit and print the plan: (recipe, preprocessing, plan)."""
    budget = plan_time(
        recipe,
        model,
        Counter(s.split for s in plan.samples),
        samples=[s for s in plan.samples if s.split == "train"],
        spent=time.perf_counter() - plan.started,
        head_on_features=head_on_features(recipe),
        device="cuda" if on_gpu(recipe) else "cpu",
        report=report,
        epochs_given=plan.epochs_given,
    )
    for line in budget.lines():
        console.print(line, highlight=False)
    if budget.image_size != preprocess.size:
        preprocess = preprocess_for(model.backbone, budget.image_size, recipe.model.resize)
    return apply_plan(recipe, budget), preprocess, budget
