"""`imagefit.train`: scan and split the data, build the model, fit with Lightning, write the run folder."""

from __future__ import annotations

import copy
import csv
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from rich.console import Console
from safetensors.torch import load_file

from imagefit import runs
from imagefit.config import Recipe, fit_epochs, parse_duration
from imagefit.data import Sample, assign_splits, read_split, scan, write_split
from imagefit.data.checks import duplicate_findings
from imagefit.data.datamodule import ImageDataModule, default_workers
from imagefit.data.imbalance import class_weights, imbalance_handling, imbalance_ratio
from imagefit.data.inventory import content_hashes
from imagefit.data.sources import ZIP_SEPARATOR, CsvColumns
from imagefit.errors import TrainingInterrupted, UserError
from imagefit.evaluation.evaluator import evaluate
from imagefit.files import cpu_tensors, save_tensors
from imagefit.models import build_classifier, preprocess_for
from imagefit.models.factory import check_model_name, native_image_size
from imagefit.models.hub import check_weights_reachable
from imagefit.models.trained import load_trained
from imagefit.report.writer import write_report
from imagefit.training.budget import (
    MAX_PLANNED_EPOCHS,
    TimeBudget,
    TimePlan,
    apply_plan,
    plan_time,
    replan_epochs,
)
from imagefit.training.callbacks import StageHook, release_memory
from imagefit.training.engine import best_epoch, build_trainer, check_engine, history_of, on_gpu, soup_applies
from imagefit.training.environment import environment, training_facts
from imagefit.training.frozen import cached_head_phase, head_on_features
from imagefit.training.module import ClassifierModule
from imagefit.training.polish import choose_inference, describe, fit_unknown
from imagefit.training.refit import mark_val_as_training
from imagefit.training.schedule import progressive_sizes
from imagefit.training.summary import print_summary

# A DDP launcher re-runs the command in each new process (LOCAL_RANK 1, 2 ...); they find the run
# folder of the first here. Honoured only in such a launched process, never in a user's shell.
RUN_DIR_ENV = "IMAGEFIT_RUN_DIR"
# Called with the name of each stage as it starts: "scan", "features", "head", "fine-tune", "epoch N"
# (N counts all epochs, head ones included), "evaluate", "report".
StageFn = Callable[[str], None]


def _no_stage(stage: str) -> None:
    del stage


def _inherited_run_dir() -> str | None:
    """The run folder handed to a process that a DDP launcher started, else None."""
    return os.environ.get(RUN_DIR_ENV) if os.environ.get("LOCAL_RANK", "0") != "0" else None


@dataclass
class Plan:
    """What one training needs: where it writes, the recipe, the data and its fixed split."""

    run_dir: Path
    recipe: Recipe
    data: str
    samples: list[Sample]
    classes: list[str]
    hashes: dict[str, str] | None = None  # file content hashes, for the feature cache (new runs)
    started: float = field(default_factory=time.perf_counter)  # when train() was called, for --time-limit
    epochs_given: bool = False  # --epochs was passed: with --time-limit it caps the planned epochs
    own_val: bool = False  # the data brought its val split (not carved at random): worth a shift check
    task: str = "single-label"  # or "multi-label" (imagefit.tasks)
    given: frozenset = frozenset()  # recipe fields the user set: adaptation leaves them as set
    median_side: int = 0  # median shorter side of the images, in pixels (0: not known)
    carried: dict = field(default_factory=dict)  # config.json fields from another run (a refit's source)


def train(
    data: str | Path | None = None,
    *,
    out: str | Path | None = None,
    name: str | None = None,
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    console: Console | None = None,
    report: bool = True,
    callbacks: list | None = None,
    on_stage: StageFn | None = None,
    csv_columns: CsvColumns | None = None,
    checks: bool = True,
    carried: dict | None = None,
    **overrides,
) -> runs.Run | None:
    """Train a classifier on DATA with the default recipe (overridden by keyword) and return the finished run.

    DATA is a folder of class folders, a folder with train/val/test folders, a CSV of path,label
    or a .zip of either. `resume` continues an interrupted run folder instead, from whatever it
    holds; `report` writes report.html (evaluation, figures, Grad-CAM) at the end. Returns None in
    the extra processes of a multi-process (DDP) run. `callbacks` are extra Lightning callbacks
    for the fine-tuning Trainer; `on_stage` is called with the name of each stage as it starts;
    `csv_columns` names a CSV's path and label columns and image folder where they cannot be guessed;
    `checks` False skips the duplicate and leakage warnings (a refit validates on training images);
    `carried` holds config.json fields a refit takes from its source run (`refit_of`, prediction settings).
    With the recipe's `refit`, the run is followed by its refit (RUN-refit), which is returned.
    A Ctrl-C at any moment raises TrainingInterrupted, naming the command that resumes the run.
    """
    started = time.perf_counter()
    console = console or Console(stderr=True, soft_wrap=True)
    notify = on_stage or _no_stage
    made: list[Path] = []  # the run folder this call made, once it exists
    try:
        total = 0.0
        if resume is not None:
            made.append(Path(resume))
            plan = _resume_plan(Path(resume), overrides)
        else:
            overrides, total = _share_time_with_refit(overrides, console)
            plan = _new_plan(data, out, name, runs_dir, overrides, console, notify, made, started, csv_columns, checks)
            plan.carried = dict(carried or {})
        run = _fit(plan, console, report=report, callbacks=callbacks, notify=notify)
        if run is None or not plan.recipe.schedule.refit:  # a refit's own recipe never asks for one
            return run
        from imagefit.training.refit import refit

        left = total - (time.perf_counter() - started) if total else 0.0
        return refit(run.path, console=console, time_limit=max(left, 1.0) if total else 0.0, report=report)
    except KeyboardInterrupt:
        raise TrainingInterrupted(_interrupted(made[0] if made else None, new=resume is None)) from None


# With --refit and --time-limit, the run gets this share of the limit and its refit the rest: the refit
# trains about as long as the run's fine-tuning (1.18x the images, the kept epochs) on cached features.
REFIT_FIRST_SHARE = 0.5


def _share_time_with_refit(overrides: dict, console: Console) -> tuple[dict, float]:
    """Overrides whose time limit is the run's share when a refit follows it; and the whole limit in seconds."""
    keys = {k: k.replace("-", "_").split(".")[-1] for k in overrides}
    asked = Recipe().override(**{k: v for k, v in overrides.items() if keys[k] in ("refit", "time_limit")})
    if not asked.schedule.refit or not asked.schedule.time_limit:
        return overrides, 0.0
    total = parse_duration(asked.schedule.time_limit)
    share = total * REFIT_FIRST_SHARE
    key = next(k for k, bare in keys.items() if bare == "time_limit")
    console.print(f"time limit with --refit: {share:.0f}s for the run, the rest for its refit", highlight=False)
    return {**overrides, key: f"{share:.0f}s"}, total


def _new_plan(
    data, out, name, runs_dir, overrides: dict, console: Console, notify: StageFn, made, started, csv_columns, checks
) -> Plan:
    """Check and split DATA, make the run folder and write what the run is made of."""
    notify("scan")
    if data is None:
        raise UserError("no DATA given. Pass a folder of class folders, a CSV or a .zip")
    overrides, note = fit_epochs(overrides)
    recipe = Recipe().override(**overrides)
    _check_model(recipe)  # before any folder is made, and before the data is read
    check_engine(recipe)
    inventory = scan(Path(data), workers=max(2, default_workers(recipe.data.num_workers)), csv_columns=csv_columns)
    recipe = _resolve_image_size(recipe, console)  # after the data check: a wrong path gets one line only
    recipe = _resolve_micro_batch(recipe)
    _say(inventory, note, recipe, console)
    samples = assign_splits(
        inventory.samples,
        val_split=recipe.data.val_split,
        test_split=recipe.data.test_split,
        seed=recipe.data.seed,
        task=inventory.task,
    )
    if checks:
        _warn_fast_findings(inventory, samples, data, console)
    inherited = _inherited_run_dir()
    run_dir = (
        Path(inherited)
        if inherited
        else runs.new_run_dir(data=Path(data), runs_dir=Path(runs_dir), name=name, out=Path(out) if out else None)
    )
    files = runs.RunFiles(run_dir)
    if inherited and files.config.exists():  # a DDP child runs the recipe its first process planned
        recipe = Recipe.from_dict(runs.read_json(files.config)["recipe"]).override(time_limit="")
    resolved = str(Path(data).expanduser().resolve())
    plan = Plan(run_dir, recipe, resolved, samples, inventory.classes, inventory.hashes, started)
    plan.epochs_given = any(key.replace("-", "_") in ("epochs", "schedule.epochs") for key in overrides)
    plan.own_val = any(s.split == "val" for s in inventory.samples)
    plan.task = inventory.task
    plan.given = frozenset(key.replace("-", "_").split(".")[-1] for key in overrides)
    sides = sorted(min(f.width, f.height) for f in inventory.facts.values() if f.width)
    plan.median_side = sides[len(sides) // 2] if sides else 0
    if not inherited:
        made.append(run_dir)
        write_split(files.split, samples)
        if inventory.unlabelled:
            runs.write_rows(files.unlabelled, ["path"], [[path] for path in inventory.unlabelled])
        runs.write_json(files.labels, plan.classes)
        runs.write_json(files.env, environment(data_fingerprint=inventory.fingerprint()))
    return plan


def _check_model(recipe: Recipe) -> None:
    """UserError for an unknown model name, or pretrained weights that cannot be had (within seconds, offline)."""
    if recipe.model.init == "clip":
        from imagefit.models.clip import check_clip_model, split_spec
        from imagefit.models.zeroshot import check_clip_reachable

        check_clip_model(recipe.model.clip_model)
        name, weights = split_spec(recipe.model.clip_model)
        if recipe.model.pretrained and weights and not Path(weights).exists():
            check_clip_reachable(name, weights)
        return
    check_model_name(recipe.model.model)
    if recipe.model.pretrained:
        check_weights_reachable(recipe.model.model)


def _say(inventory, note: str, recipe: Recipe, console: Console) -> None:
    """How the data was read, what was changed in the recipe, and the data's warnings; one line each."""
    if inventory.task == "multi-label" and recipe.data.imbalance == "sampler":
        raise UserError("--imbalance sampler is for one label an image; multi-label data uses per-label weights")
    for line in [*inventory.notes, note]:
        if line:
            console.print(line, highlight=False)
    for warning in inventory.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _interrupted(run_dir: Path | None, *, new: bool) -> str:
    """The one line for a Ctrl-C: what the run folder keeps and how to continue, or that nothing was kept."""
    files = runs.RunFiles(run_dir) if run_dir is not None else None
    if files is None or not files.config.exists():
        if files is not None and new:  # only the split and labels were written: no half-made folder is left
            for path in (files.split, files.labels, files.env, files.unlabelled):
                path.unlink(missing_ok=True)
            if files.root.exists() and not any(files.root.iterdir()):
                files.root.rmdir()
        return "interrupted before training started; nothing was kept"
    kept = {
        "new": "its split and recipe",
        "head": "its trained head",
        "fine-tune": "its last finished epoch",
        "trained": "its trained model",
        "finished": "its trained model",
    }[files.stage()]
    return f"interrupted: {run_dir} keeps {kept}; continue with `imagefit train --resume {run_dir}`"


def _warn_fast_findings(inventory, samples: list[Sample], data, console: Console) -> None:
    """One warning line per cheap audit finding (exact duplicates, leakage, conflicting labels)."""
    counts = Counter(f.kind for f in duplicate_findings(samples, inventory.hashes))
    for kind, what in (
        ("leakage", "identical images in train and val/test"),
        ("conflicting_label", "identical images under two classes"),
        ("duplicate", "groups of byte-identical images"),
    ):
        if counts[kind]:
            console.print(f"[yellow]warning:[/] {counts[kind]} {what}; see `imagefit audit {data}`", highlight=False)


def _resume_plan(run_dir: Path, overrides: dict) -> Plan:
    files = runs.RunFiles(run_dir)
    if not files.config.exists():
        raise UserError(f"{run_dir}: no config.json, so nothing to resume. Start a new run with `imagefit train DATA`")
    if overrides:
        raise UserError(f"--resume continues {run_dir} with its saved recipe; drop the options {', '.join(overrides)}")
    config = runs.read_json(files.config)
    lacking = [p.name for p in (files.split, files.labels) if not p.exists()] + [
        f"config.json's {key}" for key in ("recipe", "data") if key not in config
    ]
    if lacking:
        raise UserError(
            f"{run_dir} cannot be resumed: it lacks {', '.join(lacking)}. Start again with `imagefit train DATA`"
        )
    samples = read_split(files.split)
    missing = [s.path for s in samples if not Path(s.path.split(ZIP_SEPARATOR)[0]).exists()]
    if missing:
        raise UserError(
            f"{len(missing)} images of {files.split} are gone (first: {missing[0]}). "
            f"Put the data back at {config['data']} to resume"
        )
    plan = Plan(run_dir, Recipe.from_dict(config["recipe"]), config["data"], samples, runs.read_json(files.labels))
    plan.task = config.get("task", "single-label")
    return plan


@dataclass
class Setup:
    """What a training needs besides the plan: the model and its preprocessing, loaders, imbalance handling."""

    model: torch.nn.Module
    preprocess: object
    weights_source: str
    datamodule: ImageDataModule
    imbalance: str  # 'weights', 'sampler' or 'none'
    class_weights: torch.Tensor | None
    budget: TimePlan | None  # the --time-limit plan of a new run


def _fit(plan: Plan, console: Console, *, report: bool, callbacks: list | None, notify: StageFn) -> runs.Run | None:
    """Run what the run folder still lacks: phase 1, fine-tuning, then the evaluation and report."""
    files = runs.RunFiles(plan.run_dir)
    stage = files.stage()
    if stage in ("trained", "finished"):  # a resumed run stopped after training
        return _after_fit(plan, console, report, notify, finished=stage == "finished")
    planned = files.config.exists()  # the recipe is fixed: a resumed run, or a DDP child process
    setup = _setup(plan, stage, planned=planned, console=console, report=report)
    if not planned:
        runs.write_json(files.config, _config(plan, setup.preprocess.to_dict(), setup.weights_source, setup.imbalance))
    offset = plan.recipe.schedule.frozen_epochs if head_on_features(plan.recipe) else 0
    head_rows = _before_fine_tuning(plan, setup, stage, offset, console, notify)
    recipe = plan.recipe
    module = ClassifierModule(
        setup.model,
        recipe,
        len(plan.classes),
        class_weights=setup.class_weights,
        frozen_epochs=recipe.schedule.frozen_epochs - offset,
        task=plan.task,
    )
    extra = [StageHook(notify, offset=offset), *(callbacks or [])]
    left = None
    budget = setup.budget
    if budget is not None:
        keeper = TimeBudget(
            plan.started + budget.limit,
            finish=budget.finish_seconds,
            val=budget.val_seconds,
            cap=_epoch_cap(plan) - offset,
        )
        left = timedelta(seconds=max(1.0, keeper.deadline - time.perf_counter()))
        extra.append(keeper)
    echo = None if console.is_terminal else lambda line: console.print(line, highlight=False, soft_wrap=True)
    trainer, checkpoint = build_trainer(
        recipe, plan.run_dir, offset=offset, head_rows=head_rows, extra=extra, max_time=left, echo=echo
    )
    if recipe.schedule.progressive_size:
        first = recipe.schedule.frozen_epochs - offset
        setup.datamodule.size_at = progressive_sizes(
            setup.preprocess.size, recipe.schedule.progressive_size, first=first, end=recipe.schedule.epochs - offset
        )
    if trainer.max_epochs == 0:  # the head alone was asked for, and it is trained
        history_of(trainer).write()
        _save_trained(plan, trainer, cpu_tensors(setup.model.state_dict()))
        return _after_fit(plan, console, report, notify)
    notify("fine-tune")
    _fine_tune(trainer, module, setup.datamodule, files, resume=stage == "fine-tune")
    if not trainer.is_global_zero:
        return None
    _save_trained(plan, trainer, _final_weights(plan, setup, module, trainer, checkpoint, console))
    for path in files.checkpoints.glob("epoch-*.safetensors"):  # the soup's candidates, no longer needed
        path.unlink()
    return _after_fit(plan, console, report, notify)


def _before_fine_tuning(plan: Plan, setup: Setup, stage: str, offset: int, console: Console, notify) -> list[dict]:
    """Phase 1 on features when it is still to run (else its rows), the time plan's revision, --lr auto's test."""
    files = runs.RunFiles(plan.run_dir)
    head_rows: list[dict] = []
    if offset and stage == "new":
        head_rows = _head_phase(plan, setup, console, notify)
        if setup.budget is not None:
            _replan(plan, setup.budget, console)
    elif offset and stage == "head":  # phase 1 is done: its model and history rows are in the run folder
        setup.model.load_state_dict(load_file(str(files.head_only)))
        head_rows = runs.read_history(files.history)[:offset]
    if _finds_lr(plan, stage):
        _find_lr(plan, setup, console)
    return head_rows


def _final_weights(plan: Plan, setup: Setup, module, trainer: L.Trainer, checkpoint, console: Console) -> dict:
    """The kept epoch's weights (or the head-only model's), averaged with other epochs when the soup helps."""
    weights = _kept_weights(runs.RunFiles(plan.run_dir), checkpoint, trainer)
    return _soup(plan, setup, module, trainer, weights, console) if soup_applies(module.recipe) else weights


def _soup(plan: Plan, setup: Setup, module, trainer: L.Trainer, weights: dict, console: Console) -> dict:
    """The greedy soup of the fine-tuning epochs when it lowers val loss (else WEIGHTS); said and saved."""
    from imagefit.training.soup import epoch_file, greedy_soup, load_epoch, val_loss_fn

    files = runs.RunFiles(plan.run_dir)
    kept = best_epoch(trainer)
    losses = {
        row["epoch"]: row["val_loss"]
        for row in history_of(trainer).rows
        if row["phase"] == 2 and epoch_file(files.checkpoints, row["epoch"]).exists()
    }
    if kept not in losses or len(losses) < 2:  # the head alone was kept, or one fine-tuning epoch ran
        return weights
    deadline = plan.started + setup.budget.deadline if setup.budget is not None else None
    score = val_loss_fn(
        module.model,
        setup.datamodule.val_dataloader(),
        lambda logits, targets: module._loss(logits, targets, 0.0),
        str(module.device),
    )
    soup = greedy_soup(
        kept,
        losses,
        load_epoch(files.checkpoints),
        score,
        time_left=(lambda: deadline - time.perf_counter()) if deadline else None,
    )
    facts = {"epochs": soup.epochs, "tried": soup.tried, "val_loss": soup.val_loss}
    facts["single_val_loss"] = soup.single_val_loss
    runs.write_json(files.config, {**runs.read_json(files.config), "soup": facts})
    if len(soup.epochs) == 1:
        console.print(f"soup: no other epoch lowered val loss; epoch {kept} alone is kept", highlight=False)
        return weights
    console.print(
        f"soup: epochs {'+'.join(map(str, soup.epochs))} averaged, val loss {soup.single_val_loss:.4f} -> "
        f"{soup.val_loss:.4f} (chosen on val)",
        highlight=False,
    )
    return soup.weights


# --lr auto: optimizer steps of the range test (fastai and Lightning take 100; 50 halve its cost on a CPU).
LR_FIND_STEPS = 50


def _finds_lr(plan: Plan, stage: str) -> bool:
    """--lr auto, fine-tuning still to come, no range test recorded yet, and not a DDP launcher's extra process."""
    recipe = plan.recipe
    if not recipe.optim.lr_find or recipe.schedule.epochs == recipe.schedule.frozen_epochs:
        return False
    config = runs.read_json(runs.RunFiles(plan.run_dir).config)
    return stage in ("new", "head") and "lr_find" not in config and _inherited_run_dir() is None


def _find_lr(plan: Plan, setup: Setup, console: Console) -> Recipe:
    """The range test on a copy of the network with its trained head; the recipe fine-tunes at its suggestion."""
    from imagefit.training.lr_find import range_test

    files = runs.RunFiles(plan.run_dir)
    recipe = plan.recipe
    probe = ClassifierModule(
        copy.deepcopy(setup.model), recipe, len(plan.classes), class_weights=setup.class_weights, frozen_epochs=0,
        task=plan.task,
    )  # fmt: skip
    started = time.perf_counter()
    found = range_test(probe, setup.datamodule, recipe, out=files.root / "lr-find.png", steps=LR_FIND_STEPS)
    facts = {"steps": LR_FIND_STEPS, "suggestion": found.suggestion, "seconds": round(time.perf_counter() - started)}
    if found.suggestion is None:
        console.print(
            f"lr auto: the range test gave no suggestion (the loss never fell steadily; {found.plot.name}): "
            f"fine-tuning at {recipe.optim.lr * recipe.optim.finetune_lr_ratio:.2e} as the recipe says",
            highlight=False,
        )
    else:
        recipe = plan.recipe = recipe.override(finetune_lr_ratio=found.ratio)
        console.print(
            f"lr auto: the range test ({LR_FIND_STEPS} steps, {facts['seconds']} s) suggests fine-tuning at "
            f"{found.suggestion:.2e} (finetune-lr-ratio {found.ratio:.3g}; plot: {found.plot.name})",
            highlight=False,
        )
    config = runs.read_json(files.config)
    runs.write_json(files.config, {**config, "recipe": recipe.to_dict(), "lr_find": facts})
    return recipe


def _setup(plan: Plan, stage: str, *, planned: bool, console: Console, report: bool) -> Setup:
    """The model (pretrained for a new run), the time plan for a new run with --time-limit, loaders, imbalance."""
    recipe = plan.recipe
    L.seed_everything(recipe.data.seed, workers=True, verbose=False)
    model, preprocess, weights_source = build_classifier(
        recipe.model,
        len(plan.classes),
        pretrained=recipe.model.pretrained and stage == "new",
        classes=plan.classes if stage == "new" else None,  # --init clip: the head from the class names
    )
    if recipe.engine.channels_last:  # before anything runs it: DDP needs the same strides in every process
        model = model.to(memory_format=torch.channels_last)
    if recipe.schedule.adapt and recipe.model.pretrained and stage == "new" and not planned:
        recipe = _adapt(plan, model, preprocess, console)
    budget = None
    if recipe.schedule.time_limit and not planned:
        preprocess, budget = _apply_time_limit(plan, model, preprocess, console, report)
        recipe = plan.recipe
    train_labels = [s.label for s in plan.samples if s.split == "train"]
    if plan.task == "multi-label":
        mode, weights = _label_weights(train_labels, plan, recipe, console, planned)
    else:
        targets = [plan.classes.index(label) for label in train_labels]
        ratio = imbalance_ratio(targets)
        mode = imbalance_handling(recipe.data.imbalance, ratio, recipe.data.imbalance_ratio)
        if mode != "none" and not planned:
            console.print(
                f"classes are imbalanced (largest/smallest = {ratio:.1f}x): using "
                f"{'class-weighted loss' if mode == 'weights' else 'a weighted sampler'}",
                highlight=False,
            )
        weights = class_weights(targets, len(plan.classes)) if mode == "weights" else None
    datamodule = ImageDataModule(
        plan.samples,
        plan.classes,
        preprocess,
        data=recipe.data,
        augment=recipe.augment,
        weighted_sampler=mode == "sampler",
        task=plan.task,
    )
    return Setup(model, preprocess, weights_source, datamodule, mode, weights, budget)


def _label_weights(labels: list[str], plan: Plan, recipe: Recipe, console: Console, planned: bool):
    """Multi-label imbalance: per-label positive weights (negatives / positives, capped), unless --imbalance none."""
    from imagefit.tasks import MAX_POSITIVE_WEIGHT, positive_weights, targets

    if recipe.data.imbalance == "none":
        return "none", None
    weights = positive_weights(targets(labels, plan.classes, plan.task))
    if not planned:
        console.print(
            f"multi-label: {len(plan.classes)} labels, positives weighted {weights.min():.1f}-{weights.max():.1f}x "
            f"(negatives / positives, at most {MAX_POSITIVE_WEIGHT:.0f}x)",
            highlight=False,
        )
    return "weights", torch.from_numpy(weights)


def _adapt(plan: Plan, model, preprocess, console: Console) -> Recipe:
    """The recipe adapted to how far the images are from the pretraining photos (one line says what and why)."""
    from imagefit.data.decode import UNREADABLE, open_image
    from imagefit.data.transforms import eval_transform
    from imagefit.training.distance import FAR_FINETUNE, FAR_SHIFT, SMALL_CROP_SCALE, SMALL_SIDE, batchnorm_shift

    chosen = [s for s in plan.samples if s.split == "val"][:64] or plan.samples[:64]
    transform, views = eval_transform(preprocess), []
    for sample in chosen:
        try:
            views.append(transform(open_image(sample.path, min_size=preprocess.resize_size)))
        except UNREADABLE:
            continue
    shift = batchnorm_shift(model.backbone, torch.stack(views)) if views else None
    if shift is None:
        return plan.recipe
    far = shift > FAR_SHIFT
    changes = {k: v for k, v in FAR_FINETUNE.items() if k not in plan.given} if far else {}
    small = 0 < plan.median_side <= SMALL_SIDE
    if small and "crop_scale" not in plan.given and plan.recipe.augment.crop_scale < SMALL_CROP_SCALE:
        changes["crop_scale"] = SMALL_CROP_SCALE
    closeness = "far from" if far else "close to"
    measured = f"BatchNorm input shift {shift:.2f} ({closeness} the pretraining images; photos: about 0.15)"
    if small:
        measured += f", images of {plan.median_side} px"
    said = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in changes.items()) or "recipe unchanged"
    console.print(f"adapt: {measured}: {said}", highlight=False)
    if changes:
        plan.recipe = plan.recipe.override(**changes)
    return plan.recipe


def _fine_tune(trainer: L.Trainer, module, datamodule, files: runs.RunFiles, *, resume: bool) -> None:
    """Lightning's fit, from the last checkpoint when resuming; a Ctrl-C in it comes out as KeyboardInterrupt."""
    os.environ[RUN_DIR_ENV] = str(files.root.resolve())
    try:
        resume_from = files.last_checkpoint if resume else None
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into a graceful stop and exit(1)
            raise KeyboardInterrupt from None
        raise
    finally:
        os.environ.pop(RUN_DIR_ENV, None)


def _head_phase(plan: Plan, setup: Setup, console: Console, notify: StageFn) -> list[dict]:
    """Phase 1 on cached features; the head-only model and its history rows are kept in the run folder."""
    files = runs.RunFiles(plan.run_dir)
    model = setup.model
    rows = cached_head_phase(
        model,
        plan.samples,
        plan.classes,
        plan.hashes or content_hashes([s.path for s in plan.samples]),  # a resumed run re-hashes its files
        setup.preprocess,
        plan.recipe,
        sampler=setup.imbalance == "sampler",
        class_weights=setup.class_weights,
        device="cuda" if on_gpu(plan.recipe) else "cpu",
        console=console,
        on_stage=notify,
        check_shift=plan.own_val,
        task=plan.task,
    )
    save_tensors(files.head_only, cpu_tensors(model.state_dict()))
    runs.write_rows(files.history, runs.HISTORY_COLUMNS, rows)
    return rows


def _kept_weights(files: runs.RunFiles, checkpoint: ModelCheckpoint, trainer: L.Trainer) -> dict[str, torch.Tensor]:
    """The best checkpoint's weights, or the head-only model when its val loss beat every fine-tuning epoch's."""
    best = checkpoint.best_model_path or str(files.last_checkpoint)
    if trainer.lightning_module.recipe.schedule.keep == "last":
        best = str(files.last_checkpoint)
    history = history_of(trainer)
    if not Path(best).exists() and files.head_only.exists():  # stopped (time limit) before a fine-tuning epoch ended
        return load_file(str(files.head_only))
    if history.offset and files.head_only.exists() and best_epoch(trainer) == history.offset:
        return load_file(str(files.head_only))
    return cpu_tensors(torch.load(best, map_location="cpu", weights_only=True)["state_dict"], "model.")


def _apply_time_limit(plan: Plan, model, preprocess, console: Console, report: bool):
    """Plan epochs (and size, views) to fit --time-limit; print the plan; the preprocessing and the plan."""
    budget = plan_time(
        plan.recipe,
        model,
        Counter(s.split for s in plan.samples),
        samples=[s for s in plan.samples if s.split == "train"],
        spent=time.perf_counter() - plan.started,
        head_on_features=head_on_features(plan.recipe),
        device="cuda" if on_gpu(plan.recipe) else "cpu",
        report=report,
        epochs_given=plan.epochs_given,
    )
    for line in budget.lines():
        console.print(line, highlight=False)
    plan.recipe = apply_plan(plan.recipe, budget)
    if budget.image_size != preprocess.size:
        preprocess = preprocess_for(model.backbone, budget.image_size)
    return preprocess, budget


def _epoch_cap(plan: Plan) -> int:
    """The most epochs (head ones included) a time limit may plan: --epochs when given."""
    schedule = plan.recipe.schedule
    return schedule.epochs if plan.epochs_given else schedule.frozen_epochs + MAX_PLANNED_EPOCHS


def _replan(plan: Plan, budget: TimePlan, console: Console) -> Recipe:
    """Fine-tuning epochs re-fitted to the time left once the feature pass has run; saved in config.json."""
    frozen = plan.recipe.schedule.frozen_epochs
    epochs = frozen + replan_epochs(budget, started=plan.started, wanted=_epoch_cap(plan) - frozen)
    if epochs != plan.recipe.schedule.epochs:
        console.print(f"plan: {epochs - frozen} fine-tuning epochs fit in the time left", highlight=False)
        plan.recipe = plan.recipe.override(epochs=epochs)
        files = runs.RunFiles(plan.run_dir)
        runs.write_json(files.config, {**runs.read_json(files.config), "recipe": plan.recipe.to_dict()})
    return plan.recipe


def _after_fit(plan: Plan, console: Console, report: bool, notify: StageFn, *, finished: bool = False) -> runs.Run:
    """Evaluate the trained model and write the report (what of it is missing, on resume); print the summary."""
    files = runs.RunFiles(plan.run_dir)
    if finished and (files.report.exists() or not report):
        raise UserError(f"{plan.run_dir} has finished (model, metrics and report are written); nothing to resume")
    device = "cuda" if on_gpu(plan.recipe) else "cpu"
    release_memory()  # training's peak is behind: evaluation starts from what is in use
    if not finished:
        notify("evaluate")
        config = runs.read_json(files.config)
        if plan.task == "multi-label" and "thresholds" not in config:
            _choose_thresholds(plan, console, device)
        elif plan.task != "multi-label" and plan.recipe.predict.tune_inference and "inference" not in config:
            _choose_inference(plan, console, device)
        if plan.recipe.predict.unknown_index and "unknown" not in runs.read_json(files.config):
            _fit_unknown(plan, device, with_val=not config.get("refit_of"))
        evaluate(plan.run_dir, device=device)
        if config.get("refit_of"):
            mark_val_as_training(files)
        _predict_unlabelled(files, console, device)
    if report:
        notify("report")
        write_report(plan.run_dir)
    run = runs.load_run(plan.run_dir)
    print_summary(run, console)
    return run


def _predict_unlabelled(files: runs.RunFiles, console: Console, device: str) -> None:
    """Id,Category predictions of the unlabelled test images into submission.csv (the competition layout)."""
    if not files.unlabelled.exists():
        return
    from imagefit.prediction.batches import predict_with
    from imagefit.prediction.output import write_csv
    from imagefit.prediction.predictors import TorchPredictor

    with files.unlabelled.open(newline="", encoding="utf-8") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    predictions = predict_with(TorchPredictor.from_run(files.root, device=device), paths)
    write_csv(predictions, files.submission, overwrite=True)
    skipped = f" ({len(predictions.skipped)} unreadable skipped)" if predictions.skipped else ""
    console.print(
        f"submission: {files.submission} ({len(predictions.paths)} rows, Id,Category){skipped}", highlight=False
    )


def _fit_unknown(plan: Plan, device: str, *, with_val: bool = True) -> None:
    """The training embeddings that flag unknown images, and the threshold chosen on val, into the run folder.

    A refit's val images are training images: its threshold comes from the index's leave-one-out scores.
    """
    run = runs.load_run(plan.run_dir)
    samples = run.split()
    index, facts = fit_unknown(
        load_trained(run),
        run.inference,
        [s for s in samples if s.split == "train"],
        [s for s in samples if s.split == "val"] if with_val else None,
        run.classes,
        device=device,
        seed=plan.recipe.data.seed,
    )
    index.save(run.path / facts["index"])
    runs.write_json(run.path / "config.json", {**runs.read_json(run.path / "config.json"), "unknown": facts})


def _choose_thresholds(plan: Plan, console: Console, device: str) -> None:
    """Multi-label: one threshold a label, the best val F1 (at least THRESHOLD_FLOOR), into config.json."""
    from imagefit.prediction.batches import predict_with
    from imagefit.prediction.predictors import TorchPredictor
    from imagefit.tasks import THRESHOLD_FLOOR, best_thresholds, targets

    run = runs.load_run(plan.run_dir)
    val = [s for s in run.split() if s.split == "val"]
    predictions = predict_with(TorchPredictor.from_run(run.path, device=device), [s.path for s in val])
    truth = {s.path: s.label for s in val}
    rows = targets([truth[p] for p in predictions.paths], run.classes, run.task)
    chosen = best_thresholds(predictions.probabilities, rows)
    thresholds = {name: float(t) for name, t in zip(run.classes, chosen, strict=True)}
    runs.write_json(run.path / "config.json", {**run.config, "thresholds": thresholds})
    console.print(
        f"thresholds chosen on val for the best F1 of each label (at least {THRESHOLD_FLOOR}): "
        + ", ".join(f"{k} {v:.2f}" for k, v in thresholds.items()),
        highlight=False,
    )


def _choose_inference(plan: Plan, console: Console, device: str) -> None:
    """Evaluation size, mirror TTA and temperature chosen on val, into config.json, with one line said."""
    run = runs.load_run(plan.run_dir)
    val = [s for s in run.split() if s.split == "val"]
    inference, candidates = choose_inference(
        load_trained(run), run.train_preprocess, val, run.classes, mirror=plan.recipe.augment.hflip, device=device
    )
    if not candidates:
        return
    runs.write_json(
        run.path / "config.json", {**run.config, "inference": inference.to_dict(), "inference_candidates": candidates}
    )
    console.print(describe(inference, candidates, run.train_preprocess.size), highlight=False)


def _config(plan: Plan, preprocess: dict, weights_source: str, imbalance: str) -> dict:
    from imagefit import __version__

    return {
        "format_version": runs.FORMAT_VERSION,
        "imagefit_version": __version__,
        "data": plan.data,
        "recipe": plan.recipe.to_dict(),
        "preprocess": preprocess,
        "weights_source": weights_source,
        "imbalance_handling": imbalance,
        "task": plan.task,
        **plan.carried,
    }


def _resolve_image_size(recipe: Recipe, console: Console) -> Recipe:
    """Fix image_size 0 to a number: the model's own, capped by cpu_max_image_size when training on CPU."""
    if recipe.model.image_size:
        return recipe
    if recipe.model.init == "clip":  # one input size: the tower's own
        from imagefit.models.clip import clip_tower

        size = clip_tower(recipe.model.clip_model, pretrained=False)[0].pretrained_cfg["input_size"][-1]
        return recipe.override(image_size=size)
    native = native_image_size(recipe.model.model)
    cap = recipe.model.cpu_max_image_size
    if on_gpu(recipe) or not cap or native <= cap:
        return recipe.override(image_size=native)
    console.print(f"CPU: training at {cap} px (the model's own size is {native}; --image-size {native} for it)")
    return recipe.override(image_size=cap)


def _resolve_micro_batch(recipe: Recipe) -> Recipe:
    """Fix micro_batch -1 to a number: AUTO_MICRO_BATCH on a CPU while BatchNorm statistics are frozen, else 0.

    With frozen statistics the accumulated micro batches take the same steps as whole batches; on a CPU
    they run faster (smaller working set) and need a fraction of the activation memory.
    """
    from imagefit.config import AUTO_MICRO_BATCH

    if recipe.data.micro_batch != -1:
        return recipe
    batch = recipe.data.batch_size
    fits = batch > AUTO_MICRO_BATCH and batch % AUTO_MICRO_BATCH == 0
    chosen = AUTO_MICRO_BATCH if fits and not on_gpu(recipe) and not recipe.schedule.finetune_bn else 0
    return recipe.override(micro_batch=chosen)


def _save_trained(plan: Plan, trainer: L.Trainer, weights: dict[str, torch.Tensor]) -> None:
    """The kept weights to model.safetensors, the kept epoch to metrics.json, how it trained to env.json."""
    files = runs.RunFiles(plan.run_dir)
    save_tensors(files.model, weights)
    runs.write_json(files.metrics, {"best_epoch": best_epoch(trainer)})
    runs.write_json(files.env, {**runs.read_json(files.env), **training_facts(trainer)})
