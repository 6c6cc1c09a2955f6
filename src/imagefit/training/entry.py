"""`imagefit.train` as the command runs it: one run (the default), a preset (`quality`), or one run per model of
a comma-separated `model` list on one split. The CLI only parses and prints around this."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from imagefit.errors import UserError
from imagefit.training import pipeline
from imagefit.training.backbones import train_backbones
from imagefit.training.chain import asked
from imagefit.training.quality import resume_best, train_quality


def train(
    data: str | Path | None = None,
    *,
    quality: str = "balanced",
    out: str | Path | None = None,
    name: str | None = None,
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    console: Console | None = None,
    **options,
):
    """Train on DATA; returns the run, for `quality='best'` the ensemble, and for `model='a,b'` the list of runs.

    Every other keyword is `imagefit.training.pipeline.train`'s (report, callbacks, csv_columns, recipe
    fields). `quality` fast, balanced or best is AutoGluon's preset; a comma-separated `model` trains one
    run per backbone on the first run's split (runs_dir/<name>-<model>).
    """
    if asked(options.get("unlabelled")) and (quality != "balanced" or "," in str(options.get("model", ""))):
        raise UserError("--unlabelled trains students of one run: use it with --quality balanced and one --model")
    if resume is not None and quality == "balanced" and not asked(options.get("unlabelled")):
        ensemble = resume_best(resume, console=console, report=options.get("report", True))
        if ensemble is not None:  # a member of --quality best: the command goes on
            return ensemble
    if quality != "balanced":
        options.pop("unlabelled", None)
        if resume is not None:
            raise UserError(f"--resume continues {resume} as it was planned: leave --quality out")
        return train_quality(data, quality, out=out, name=name, runs_dir=runs_dir, console=console, **options)
    if "," in str(options.get("model", "")):
        models = [m.strip() for m in options.pop("model").split(",") if m.strip()]
        if out is not None:
            raise UserError(
                f"--out names one run folder, and --model {','.join(models)} makes {len(models)}: "
                f"use --runs-dir {out} (each run is <runs-dir>/<name>-<model>)"
            )
        options.pop("unlabelled", None)
        return train_backbones(data, models, runs_dir=runs_dir, name=name, console=console, **options)
    return pipeline.train(data, out=out, name=name, runs_dir=runs_dir, resume=resume, console=console, **options)
