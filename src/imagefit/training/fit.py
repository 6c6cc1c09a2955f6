"""`imagefit.train`: scan and split the data, build the model, fit with Lightning, write the run folder."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from rich.console import Console
from safetensors.torch import load_file, save_file

from imagefit import runs
from imagefit.config import Recipe
from imagefit.data import Sample, assign_splits, read_split, scan, write_split
from imagefit.data.datamodule import (
    ImageDataModule,
    class_weights,
    default_workers,
    imbalance_handling,
    imbalance_ratio,
)
from imagefit.data.sources import ZIP_SEPARATOR
from imagefit.errors import TrainingInterrupted, UserError
from imagefit.evaluation import evaluate
from imagefit.models import build_classifier, preprocess_for
from imagefit.models.factory import check_model_name, native_image_size
from imagefit.report import write_report
from imagefit.training.budget import apply_plan, plan_time
from imagefit.training.engine import best_epoch, build_trainer, history_of, on_gpu
from imagefit.training.environment import environment, training_facts
from imagefit.training.frozen import cached_head_phase, head_on_features
from imagefit.training.module import ClassifierModule
from imagefit.training.summary import print_summary

# A DDP launcher re-runs the command in each new process; they find the run folder of the first here.
RUN_DIR_ENV = "IMAGEFIT_RUN_DIR"
# The model after phase 1 on cached features, kept when no fine-tuning epoch beats it on val. In the
# run folder, not checkpoints/: Lightning warns about a checkpoint folder that is not empty.
HEAD_WEIGHTS = "head-only.safetensors"


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
    **overrides,
) -> runs.Run | None:
    """Train a classifier on DATA with the default recipe (overridden by keyword) and return the finished run.

    DATA is a folder of class folders, a folder with train/val/test folders, a CSV of path,label
    or a .zip of either. `resume` continues an interrupted run folder instead; `report` writes
    report.html (evaluation, figures, Grad-CAM) at the end. Returns None in
    the extra processes of a multi-process (DDP) run. `callbacks` are extra Lightning callbacks
    for the fine-tuning Trainer.
    """
    started = time.perf_counter()
    console = console or Console(stderr=True)
    if resume is not None:
        return _fit(_resume_plan(Path(resume), overrides), console, resuming=True, report=report, callbacks=callbacks)
    if data is None:
        raise UserError("no DATA given. Pass a folder of class folders, a CSV or a .zip")
    recipe = Recipe().override(**overrides)
    check_model_name(recipe.model.model)  # before any folder is made
    inventory = scan(Path(data), workers=max(2, default_workers(recipe.data.num_workers)))
    recipe = _resolve_image_size(recipe, console)  # after the data check: a wrong path gets one line only
    for warning in inventory.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    samples = assign_splits(
        inventory.samples, val_split=recipe.data.val_split, test_split=recipe.data.test_split, seed=recipe.data.seed
    )
    _warn_fast_findings(inventory, samples, data, console)
    inherited = os.environ.get(RUN_DIR_ENV)
    run_dir = (
        Path(inherited)
        if inherited
        else runs.new_run_dir(data=Path(data), runs_dir=Path(runs_dir), name=name, out=Path(out) if out else None)
    )
    if inherited and (run_dir / "config.json").exists():  # a DDP child runs the recipe its first process planned
        recipe = Recipe.from_dict(runs.read_json(run_dir / "config.json")["recipe"]).override(time_limit="")
    resolved = str(Path(data).expanduser().resolve())
    plan = Plan(run_dir, recipe, resolved, samples, inventory.classes, inventory.hashes, started)
    if not inherited:
        write_split(run_dir / "split.csv", samples)
        runs.write_json(run_dir / "labels.json", plan.classes)
        runs.write_json(run_dir / "env.json", environment(data_fingerprint=inventory.fingerprint()))
    return _fit(plan, console, resuming=False, report=report, callbacks=callbacks)


def _warn_fast_findings(inventory, samples: list[Sample], data, console: Console) -> None:
    """One warning line per cheap audit finding (exact duplicates, leakage, conflicting labels)."""
    from imagefit.audit.findings import duplicate_findings

    counts = Counter(f.kind for f in duplicate_findings(samples, inventory.hashes))
    for kind, what in (
        ("leakage", "identical images in train and val/test"),
        ("conflicting_label", "identical images under two classes"),
        ("duplicate", "groups of byte-identical images"),
    ):
        if counts[kind]:
            console.print(f"[yellow]warning:[/] {counts[kind]} {what}; see `imagefit audit {data}`", highlight=False)


def _resume_plan(run_dir: Path, overrides: dict) -> Plan:
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise UserError(f"{run_dir}: no config.json, so nothing to resume. Start a new run with `imagefit train DATA`")
    if overrides:
        raise UserError(f"--resume continues {run_dir} with its saved recipe; drop the options {', '.join(overrides)}")
    if not (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "model.safetensors").exists():
        raise UserError(f"{run_dir} has finished (model.safetensors is written); nothing to resume")
    if not (run_dir / "checkpoints" / "last.ckpt").exists():
        raise UserError(
            f"{run_dir}: no checkpoint yet (it stopped before its first epoch ended). "
            "Start again with `imagefit train DATA`"
        )
    config = runs.read_json(config_path)
    samples = read_split(run_dir / "split.csv")
    missing = [s.path for s in samples if not Path(s.path.split(ZIP_SEPARATOR)[0]).exists()]
    if missing:
        raise UserError(
            f"{len(missing)} images of {run_dir}/split.csv are gone (first: {missing[0]}). "
            f"Put the data back at {config['data']} to resume"
        )
    return Plan(
        run_dir, Recipe.from_dict(config["recipe"]), config["data"], samples, runs.read_json(run_dir / "labels.json")
    )


def _fit(
    plan: Plan, console: Console, *, resuming: bool, report: bool = True, callbacks: list | None = None
) -> runs.Run | None:
    recipe = plan.recipe
    L.seed_everything(recipe.data.seed, workers=True, verbose=False)
    model, preprocess, weights_source = build_classifier(
        recipe.model, len(plan.classes), pretrained=recipe.model.pretrained and not resuming
    )
    if recipe.engine.channels_last:  # before anything runs it: DDP needs the same strides in every process
        model = model.to(memory_format=torch.channels_last)
    deadline = None
    if recipe.schedule.time_limit and not resuming:
        preprocess, deadline = _apply_time_limit(plan, model, preprocess, console, report)
        recipe = plan.recipe
    targets = [plan.classes.index(s.label) for s in plan.samples if s.split == "train"]
    ratio = imbalance_ratio(targets)
    mode = imbalance_handling(recipe.data.imbalance, ratio, recipe.data.imbalance_ratio)
    if mode != "none" and not resuming:
        console.print(
            f"classes are imbalanced (largest/smallest = {ratio:.1f}x): using "
            f"{'class-weighted loss' if mode == 'weights' else 'a weighted sampler'}",
            highlight=False,
        )
    datamodule = ImageDataModule(
        plan.samples,
        plan.classes,
        preprocess,
        data=recipe.data,
        augment=recipe.augment,
        weighted_sampler=mode == "sampler",
    )
    weights = class_weights(targets, len(plan.classes)) if mode == "weights" else None
    if not resuming and not os.environ.get(RUN_DIR_ENV):
        runs.write_json(plan.run_dir / "config.json", _config(plan, preprocess.to_dict(), weights_source, mode))
    offset = recipe.schedule.frozen_epochs if head_on_features(recipe) else 0
    head_rows = _head_phase(plan, model, preprocess, mode, weights, console) if offset and not resuming else []
    module = ClassifierModule(
        model, recipe, len(plan.classes), class_weights=weights, frozen_epochs=recipe.schedule.frozen_epochs - offset
    )
    max_time = None if deadline is None else timedelta(seconds=max(1.0, deadline - time.perf_counter()))
    trainer, checkpoint = build_trainer(
        recipe, plan.run_dir, offset=offset, head_rows=head_rows, extra=callbacks, max_time=max_time
    )
    if trainer.max_epochs == 0:  # the head alone was asked for, and it is trained
        history = history_of(trainer)
        history.write()
        _finish(plan, trainer, _weights(model.state_dict(), prefix=""))
        return _after_fit(plan, console, report)
    last = plan.run_dir / "checkpoints" / "last.ckpt"
    os.environ[RUN_DIR_ENV] = str(plan.run_dir.resolve())
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=last if resuming else None, weights_only=True)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into a graceful stop and exit(1)
            raise TrainingInterrupted(
                f"interrupted: {plan.run_dir} keeps its last finished epoch; "
                f"continue with `imagefit train --resume {plan.run_dir}`"
            ) from None
        raise
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
    if not trainer.is_global_zero:
        return None
    _finish(plan, trainer, _kept_weights(plan.run_dir, checkpoint, trainer))
    return _after_fit(plan, console, report)


def _head_phase(plan: Plan, model, preprocess, mode: str, weights, console: Console) -> list[dict]:
    """Phase 1 on cached features; the head-only model is kept beside the checkpoints."""
    rows = cached_head_phase(
        model,
        plan.samples,
        plan.classes,
        plan.hashes,  # set for every new run, and phase 1 runs only in new runs
        preprocess,
        plan.recipe,
        sampler=mode == "sampler",
        class_weights=weights,
        device="cuda" if on_gpu(plan.recipe) else "cpu",
        console=console,
    )
    save_file(_weights(model.state_dict(), ""), str(plan.run_dir / HEAD_WEIGHTS))
    return rows


def _kept_weights(run_dir: Path, checkpoint: ModelCheckpoint, trainer: L.Trainer) -> dict[str, torch.Tensor]:
    """The best checkpoint's weights, or the head-only model when its val loss beat every fine-tuning epoch's."""
    best = checkpoint.best_model_path or str(run_dir / "checkpoints" / "last.ckpt")
    history = history_of(trainer)
    head_path = run_dir / HEAD_WEIGHTS
    if not Path(best).exists() and head_path.exists():  # stopped (time limit) before a fine-tuning epoch ended
        return load_file(str(head_path))
    if history.offset and head_path.exists() and best_epoch(trainer) == history.offset:
        return load_file(str(head_path))
    return _weights(torch.load(best, map_location="cpu", weights_only=True)["state_dict"], "model.")


def _apply_time_limit(plan: Plan, model, preprocess, console: Console, report: bool):
    """Plan epochs (and size, views) to fit --time-limit; print the plan; the preprocessing and fine-tuning deadline."""
    budget = plan_time(
        plan.recipe,
        model,
        Counter(s.split for s in plan.samples),
        samples=[s for s in plan.samples if s.split == "train"],
        spent=time.perf_counter() - plan.started,
        head_on_features=head_on_features(plan.recipe),
        device="cuda" if on_gpu(plan.recipe) else "cpu",
        report=report,
    )
    for line in budget.lines():
        console.print(line, highlight=False)
    plan.recipe = apply_plan(plan.recipe, budget)
    if budget.image_size != preprocess.size:
        preprocess = preprocess_for(model.backbone, budget.image_size)
    return preprocess, plan.started + budget.deadline


def _after_fit(plan: Plan, console: Console, report: bool) -> runs.Run:
    if report:
        write_report(plan.run_dir)
    run = runs.load_run(plan.run_dir)
    print_summary(run, console)
    return run


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
    }


def _resolve_image_size(recipe: Recipe, console: Console) -> Recipe:
    """Fix image_size 0 to a number: the model's own, capped by cpu_max_image_size when training on CPU."""
    if recipe.model.image_size:
        return recipe
    native = native_image_size(recipe.model.model)
    cap = recipe.model.cpu_max_image_size
    if on_gpu(recipe) or not cap or native <= cap:
        return recipe.override(image_size=native)
    console.print(f"CPU: training at {cap} px (the model's own size is {native}; --image-size {native} for it)")
    return recipe.override(image_size=cap)


def _weights(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The classifier's tensors from a state dict (a checkpoint's carry the 'model.' prefix)."""
    return {k.removeprefix(prefix): v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(prefix)}


def _finish(plan: Plan, trainer: L.Trainer, weights: dict[str, torch.Tensor]) -> None:
    """Best weights to model.safetensors, then final figures through the same path as `imagefit evaluate`."""
    save_file(weights, str(plan.run_dir / "model.safetensors"))
    runs.write_json(plan.run_dir / "metrics.json", {"best_epoch": best_epoch(trainer)})
    env_path = plan.run_dir / "env.json"
    runs.write_json(env_path, {**runs.read_json(env_path), **training_facts(trainer)})
    evaluate(plan.run_dir, device="cuda" if trainer.strategy.root_device.type == "cuda" else "cpu")
