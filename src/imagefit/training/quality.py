"""`imagefit train DATA --quality fast|balanced|best`: named presets of the recipe, as AutoGluon's presets.

- fast: the head alone, trained on cached features of the frozen pretrained backbone (phase 1 of
  the recipe, no fine-tuning): a model in minutes on a laptop CPU.
- balanced (the default): the recipe as it is: the head, then the whole network fine-tuned.
- best: several backbones (tf_efficientnet_lite0, lite1 and lite2 unless `--model a,b,c` names
  others), each trained with the recipe on one split, then the plain mean of their probabilities:
  an ensemble folder, which evaluate, predict, report and export read as they read a run folder.
  The mean of three backbones was the most accurate clothing-small model measured on this CPU
  (benchmarks/RESULTS.md); with `--time-limit` each member gets an equal share of it, and the time a member
  leaves goes to the members after it.

A preset fills only options the user did not set: `--quality fast --epochs 5` trains the head
for 5 epochs. The run's config.json records the preset beside the recipe it expanded to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.config import parse_duration
from imagefit.errors import UserError
from imagefit.training.chain import ENSEMBLE

QUALITIES = ("fast", "balanced", "best")
BEST_MODELS = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
FAST_EPOCHS = 3  # the recipe's head epochs
# With --time-limit, the share of it kept for the ensemble's figures and report after the members.
BEST_FINISH_SHARE = 0.05


@dataclass
class QualityPlan:
    quality: str
    models: list[str]  # the backbones to train: one, or the members of the ensemble
    overrides: dict = field(default_factory=dict)  # the recipe options of every run
    note: str = ""  # the line printed before training: what the preset chose and why
    budget: float = 0.0  # best with --time-limit: the members' seconds together (backbones.member_limit)


def plan_quality(quality: str, overrides: dict) -> QualityPlan:
    """What QUALITY trains: its backbones and recipe options, the user's OVERRIDES kept as they are."""
    if quality not in QUALITIES:
        raise UserError(f"--quality {quality} is not one of: {', '.join(QUALITIES)}")
    options = {_bare(key): value for key, value in overrides.items()}
    named = [m.strip() for m in str(options.pop("model", "")).split(",") if m.strip()]
    if quality == "best":
        models = named or list(BEST_MODELS)
        if len(models) < 2:
            raise UserError(
                f"--quality best averages several backbones and --model names one ({models[0]}): "
                "name two or more (--model a,b,c) or leave --model out for lite0, lite1 and lite2"
            )
        limit = parse_duration(options.get("time_limit", ""))
        budget = limit * (1 - BEST_FINISH_SHARE)  # 0 without a limit
        share = ""
        if limit:
            each = budget / len(models)
            options["time_limit"] = f"{each:.0f}s"
            share = f", {each / 60:.1f} min each of the {limit / 60:.1f} min limit (what one leaves goes to the next)"
        note = (
            f"quality best: {len(models)} backbones ({', '.join(models)}) trained on one split{share}, then the "
            "mean of their probabilities (the most accurate model measured on clothing-small: benchmarks/RESULTS.md)"
        )
        return QualityPlan(quality, models, options, note, budget=budget)
    if quality == "fast":
        epochs = int(options.get("epochs", options.get("frozen_epochs", FAST_EPOCHS)))
        options.setdefault("epochs", epochs)
        options.setdefault("frozen_epochs", options["epochs"])
        note = (
            f"quality fast: the head alone, {options['frozen_epochs']} epochs on cached features of the frozen backbone"
        )
        if int(options["frozen_epochs"]) < int(options["epochs"]):
            note += f", then {int(options['epochs']) - int(options['frozen_epochs'])} fine-tuning (as you set)"
        else:
            note += ", no fine-tuning (--quality balanced fine-tunes the whole network: slower, usually better)"
        return QualityPlan(quality, named[:1] or [], options, note)
    return QualityPlan(quality, named, options, "")


def _bare(key: str) -> str:
    """An option's bare name: `--frozen-epochs` and `schedule.frozen_epochs` are `frozen_epochs`."""
    return key.replace("-", "_").removeprefix("schedule.").removeprefix("model.")


def train_quality(
    data: str | Path,
    quality: str = "balanced",
    *,
    out: str | Path | None = None,
    name: str | None = None,
    runs_dir: str | Path = "runs",
    console: Console | None = None,
    report: bool = True,
    csv_columns=None,
    **overrides,
):
    """Train DATA at QUALITY; return the run (fast, balanced) or the ensemble (best, at OUT or runs_dir/<name>-best)."""
    from imagefit.training.pipeline import train

    console = console or Console(stderr=True, soft_wrap=True)
    plan = plan_quality(quality, overrides)
    if plan.note:
        console.print(plan.note, highlight=False)
    carried = {"quality": plan.quality}
    if plan.quality != "best":
        if len(plan.models) > 1:
            raise UserError(f"--model {','.join(plan.models)} trains several runs: use it with --quality best")
        model = {"model": plan.models[0]} if plan.models else {}
        return train(
            data, out=out, name=name, runs_dir=runs_dir, console=console, report=report, carried=carried,
            csv_columns=csv_columns, **model, **plan.overrides,
        )  # fmt: skip
    stem = name or runs.dataset_name(Path(data))
    asked = {
        "data": str(data),
        "models": plan.models,
        "runs_dir": str(Path(runs_dir).resolve()),
        "name": stem,
        "out": str(Path(out or Path(runs_dir) / f"{stem}-best").resolve()),
        "budget": plan.budget,
        "options": {k: v for k, v in plan.overrides.items() if v is None or isinstance(v, str | int | float | bool)},
    }
    carried[ENSEMBLE] = asked
    return _best(data, asked, console, report, carried, csv_columns, plan.overrides, resume=False)


def resume_best(member: str | Path, *, console: Console | None = None, report: bool = True):
    """`--resume` of a `--quality best` member (its config.json holds the command's ENSEMBLE): that member finished,
    the members after it trained or resumed, the ensemble made; None for a folder of no such command."""
    record = runs.ConfigRecord(runs.RunFiles(Path(member)))
    asked = record.values().get(ENSEMBLE) if record.exists() else None
    if not asked:
        return None
    folders = [Path(asked["runs_dir"]) / f"{asked['name']}-{model}" for model in asked["models"]]
    ensemble = runs.RunFiles(Path(asked["out"]))
    if ensemble.metrics.exists() and (ensemble.report.exists() or not report):
        if all(runs.RunFiles(folder).stage() == "finished" for folder in folders):
            raise UserError(f"{member} and its ensemble {asked['out']} have finished; nothing to resume")
    console = console or Console(stderr=True, soft_wrap=True)
    carried = {"quality": "best", ENSEMBLE: asked}
    return _best(asked["data"], asked, console, report, carried, None, asked["options"], resume=True)


def _best(data, asked: dict, console: Console, report: bool, carried: dict, csv_columns, options: dict, *, resume):
    """The members of ASKED trained (with RESUME: each one found taken as it is, or resumed), then their ensemble."""
    from imagefit.evaluation.ensembles import make_ensemble
    from imagefit.training.backbones import train_backbones

    members = train_backbones(
        data, asked["models"], runs_dir=asked["runs_dir"], name=asked["name"], console=console, report=report,
        carried=carried, csv_columns=csv_columns, budget=asked["budget"], resume=resume, **options,
    )  # fmt: skip
    if len(members) < 2:
        raise UserError(f"--quality best needs two finished members, {len(members)} finished: see the lines above")
    ensemble = make_ensemble([m.path for m in members], out=asked["out"], method="mean")
    if report:
        from imagefit.report.writer import write_report

        write_report(ensemble.path)
    return ensemble
