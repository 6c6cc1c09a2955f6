"""Commands that train: train, tune, lr-find, refit, add-class."""

from __future__ import annotations

from pathlib import Path

import typer

from imagefit.cli.app import (
    app,
    check_data,
    check_inputs,
    check_run,
    console,
    parse_overrides,
    print_comparison,
    print_ensemble_figures,
    quiet_lightning,
    user_errors,
)
from imagefit.config import field_help
from imagefit.errors import UserError


def _recipe_epilog() -> str:
    lines = ["Recipe options (any of them as --name value, e.g. --epochs 8 --model resnet50 --vflip true):", ""]
    lines += [f"--{name.replace('_', '-')} [{default}]  {text}" for name, default, text in field_help()]
    return "\n\n".join(lines)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=_recipe_epilog())
def train(
    ctx: typer.Context,
    data: Path | None = typer.Argument(
        None, help="folder of class folders, pre-split folders, CSV of path,label, or .zip"
    ),
    out: Path | None = typer.Option(None, help="write the run folder exactly here"),
    name: str | None = typer.Option(None, help="run name under --runs-dir (default: the data's name)"),
    runs_dir: Path = typer.Option(Path("runs"), help="where new run folders go"),
    resume: Path | None = typer.Option(None, help="continue this interrupted run folder"),
    report: bool = typer.Option(True, help="write report.html at the end"),
    quality: str = typer.Option(
        "balanced",
        help="fast (the head alone on frozen features) | balanced (head, then fine-tuning) | best (an ensemble of "
        "lite0, lite1, lite2 or the --model list, written to --out or <runs-dir>/<name>-best)",
    ),
    path_column: str | None = typer.Option(None, help="CSV column naming the images (default: found from the files)"),
    label_column: str | None = typer.Option(None, help="CSV column of the labels (default: label, class, ...)"),
    image_dir: Path | None = typer.Option(None, help="folder of a CSV's images, relative to the CSV"),
    label_delim: str | None = typer.Option(None, help="what parts several labels in a CSV cell (default: found)"),
    unlabelled: str | None = typer.Option(
        None,
        help="images without labels (folder, zip) pseudo-labelled by rounds of students after the run; default: the "
        "competition layout's unlabelled test/; none: off",
    ),
) -> None:
    """Train a classifier on DATA with the full transfer-learning recipe and write a run folder."""
    with user_errors():
        overrides = parse_overrides(ctx.args)
        _check_train_inputs(data, resume, overrides, unlabelled)  # before torch and Lightning are imported
        from imagefit.data.sources import CsvColumns
        from imagefit.training.entry import train as train_run

        quiet_lightning()
        columns = CsvColumns(path_column, label_column, image_dir, label_delim)
        made = train_run(
            data, quality=quality, out=out, name=name, runs_dir=runs_dir, resume=resume, console=console,
            report=report, csv_columns=columns, unlabelled=unlabelled, **overrides,
        )  # fmt: skip
        if isinstance(made, list):  # --model a,b,c: one run each, then the table
            print_comparison([run.path for run in made], sort="", out=None)
        elif quality != "balanced":
            _print_quality(made, console)


def _check_train_inputs(data: Path | None, resume: Path | None, overrides: dict, unlabelled: str | None) -> None:
    """UserError for a missing DATA or run folder, or a recipe option no recipe takes; imports no torch."""
    from imagefit.config import Recipe, fit_epochs
    from imagefit.data.sources import check_data_path
    from imagefit.runs import check_run_folder

    if resume is not None:
        check_run_folder(resume, resumable=True)
        return
    if data is None:
        raise UserError("no DATA given. Pass a folder of class folders, a CSV or a .zip")
    check_data_path(data)
    if unlabelled is not None and unlabelled.lower() != "none" and not Path(unlabelled).exists():
        raise UserError(f"--unlabelled {unlabelled}: no such folder or file. Name a folder or zip of images, or none")
    plain = {k: v for k, v in overrides.items() if not (k == "model" and "," in str(v))}
    Recipe().override(**fit_epochs(plain)[0])


def _print_quality(made, console) -> None:
    """After --quality best: the members and the ensemble, one line each; nothing more for one run."""
    from imagefit.prediction.ensembles import Ensemble

    if not isinstance(made, Ensemble):
        return
    print_comparison(made.members, sort="", out=None)
    print_ensemble_figures(made, prefix="ensemble ")
    console.print(
        f"ensemble folder: {made.path} (evaluate, predict, report and export read it as a run folder)", highlight=False
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def tune(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="data, as for train"),
    trials: int = typer.Option(20, help="trials in the study in all (a second command adds up to this many)"),
    study: str | None = typer.Option(None, help="study name (default: the data's name)"),
    studies_dir: Path = typer.Option(Path("studies"), help="where study folders go"),
    storage: str | None = typer.Option(
        None, help="Optuna storage: a URL (postgresql://user:pw@host/db) or journal:PATH (a file on a shared disk)"
    ),
    time_limit: str = typer.Option("", help="stop starting trials after this long (30m, 2h)"),
    workers: int = typer.Option(1, help="worker processes on this machine"),
    metric: str = typer.Option("macro_f1", help="val figure to maximise: macro_f1 or accuracy"),
    models: str = typer.Option("", help="backbones to choose from, comma-separated (default: the recipe's)"),
    sizes: str = typer.Option("", help="image sizes to choose from, comma-separated (default: the recipe's)"),
    seed: int = typer.Option(0, help="seed of the sampler"),
) -> None:
    """Search the recipe with Optuna (TPE, pruning on val loss); every trial is a run folder."""
    from imagefit.tuning.study import tune as tune_study

    quiet_lightning()
    with user_errors():
        tune_study(
            data,
            trials=trials,
            study=study,
            studies_dir=studies_dir,
            storage=storage,
            time_limit=time_limit,
            workers=workers,
            metric=metric,
            models=[m.strip() for m in models.split(",") if m.strip()],
            sizes=[int(v) for v in sizes.split(",") if v.strip()],
            seed=seed,
            console=console,
            **parse_overrides(ctx.args),
        )


@app.command("lr-find", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lr_find(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="data, as for train"),
    out: Path = typer.Option(Path("lr-find.png"), help="where the loss-against-learning-rate plot goes"),
    steps: int = typer.Option(100, help="steps of the range test"),
) -> None:
    """Learning-rate range test on the whole network (Lightning's lr_find); says which rate to fine-tune at."""
    with user_errors():
        check_data(data)
        from imagefit.training.lr_find import lr_find as range_test

        quiet_lightning()
        found = range_test(data, out=out, steps=steps, console=console, **parse_overrides(ctx.args))
        if found.suggestion is None:
            console.print(f"no clear suggestion (the loss never fell steadily); see {found.plot}", highlight=False)
            return
        console.print(
            f"suggested fine-tuning learning rate {found.suggestion:.2e}: imagefit train {data} "
            f"--finetune-lr-ratio {found.ratio:.3g}   (plot: {found.plot})",
            highlight=False,
        )


@app.command()
def refit(
    run: Path = typer.Argument(..., help="a finished run folder"),
    out: Path | None = typer.Option(None, help="the new run folder (default RUN-refit)"),
) -> None:
    """Train the run's recipe again on its train + val images, for the epochs it kept (AutoGluon's refit_full)."""
    with user_errors():
        check_run(run)
        from imagefit.training.pipeline import refit as refit_run

        quiet_lightning()
        done = refit_run(run, out=out, console=console)
        test = done.metrics.get("test")
        said = f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}" if test else "no test split"
        console.print(f"refit: {done.path} ({said})", highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def distill(
    ctx: typer.Context,
    teacher: Path = typer.Argument(..., help="a finished run folder or an ensemble folder"),
    model: str = typer.Option("tf_efficientnet_lite0", help="the student's timm model"),
    unlabelled: Path | None = typer.Option(None, help="images without labels the teacher labels for the student too"),
    out: Path | None = typer.Option(None, help="the student's run folder (default TEACHER-MODEL)"),
    report: bool = typer.Option(True, help="write report.html at the end"),
) -> None:
    """Train a smaller model on a run's or an ensemble's soft labels (knowledge distillation); recipe options too."""
    with user_errors():
        overrides = parse_overrides(ctx.args)
        check_run(teacher)
        if unlabelled is not None:
            check_inputs([unlabelled])
        from imagefit.training.pipeline import distill as distill_run

        quiet_lightning()
        student = distill_run(
            teacher, model=model, unlabelled=unlabelled, out=out, console=console, report=report, **overrides
        )
        test = student.metrics.get("test")
        said = f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}" if test else "no test split"
        console.print(f"distilled: {student.path} ({said})", highlight=False)


@app.command("add-class")
def add_class(
    run: Path = typer.Argument(..., help="run folder"),
    name: str = typer.Argument(..., help="the new class"),
    images: list[Path] = typer.Argument(..., help="1-20 example images (files, folders or a zip)"),
    out: Path = typer.Option(..., help="the new run folder (a copy of RUN that also knows NAME)"),
) -> None:
    """Teach a run a new class from a few examples, without retraining (weights imprinted in the head)."""
    with user_errors():
        check_run(run)
        check_inputs(images)
        from imagefit.training.add_class import add_class as add_new_class

        grown = add_new_class(run, name, images, out=out)
        figures = grown.metrics.get("val", {})
        said = f"; val accuracy on the old classes {figures['accuracy']:.4f}" if figures else ""
        console.print(f"{grown.path}: {len(grown.classes)} classes, '{name}' added{said}", highlight=False)
