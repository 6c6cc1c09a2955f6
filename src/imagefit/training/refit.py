"""`imagefit refit RUN`: the run's recipe trained again on train + val, for the epochs the run kept.

On small datasets the 15 % held out for validation is worth points once the recipe is chosen
(AutoGluon's `refit_full`). The refit trains for the run's kept number of epochs and keeps the
last one (nothing is left to choose on), predicts with the settings the run chose on val
(evaluation size, test-time views, temperature), and sets its unknown threshold from its own
training embeddings (leave one out). Its test figures are honest; its val figures are not (val
is training data now) and are kept apart under `val_in_training`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.data import Sample, write_split
from imagefit.errors import UserError


def refit(run_path: str | Path, *, out: str | Path | None = None, console: Console | None = None) -> runs.Run:
    """A new run folder (default RUN-refit) trained on RUN's train and val images; returns it."""
    from imagefit.evaluation import evaluate
    from imagefit.training.fit import train

    console = console or Console(stderr=True, soft_wrap=True)
    source = runs.load_run(Path(run_path))
    kept = source.metrics.get("best_epoch")
    if not kept:
        raise UserError(f"{source.path} has no kept epoch in metrics.json; finish it first (imagefit train --resume)")
    samples = source.split()
    merged = [Sample(s.path, s.label, "train" if s.split == "val" else s.split) for s in samples]
    # The loop still validates each epoch: on the val images, which are training images now.
    merged += [s for s in samples if s.split == "val"]
    recipe = source.recipe
    frozen = min(recipe.schedule.frozen_epochs, kept)
    overrides = {
        f"{group}.{name}": value
        for group, values in recipe.to_dict().items()
        for name, value in values.items()
        if name not in ("epochs", "frozen_epochs", "patience", "keep", "time_limit", "tune_inference")
    }
    overrides.update(epochs=kept, frozen_epochs=frozen, patience=10**6, keep="last", tune_inference=False)
    overrides["unknown_index"] = False  # made below, without val
    target = Path(out) if out else source.path.with_name(f"{source.path.name}-refit")
    console.print(
        f"refit: {sum(s.split == 'train' for s in merged)} images (train + val of {source.path.name}), "
        f"{kept} epochs ({frozen} head), the last kept",
        highlight=False,
    )
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "refit.csv"
        write_split(manifest, merged)
        run = train(manifest, out=target, console=console, report=False, checks=False, **overrides)
    _carry_over(source, run)
    evaluate(run.path)
    return _mark_val(run)


def _carry_over(source: runs.Run, run: runs.Run) -> None:
    """The source run's prediction settings, and an unknown index of the refit's own training embeddings."""
    from imagefit.training.polish import fit_unknown

    files = runs.RunFiles(run.path)
    config = runs.read_json(files.config)
    config["inference"] = source.config.get("inference", config.get("inference"))
    config["refit_of"] = str(source.path.resolve())
    runs.write_json(files.config, config)
    if source.config.get("unknown"):
        loaded = runs.load_run(run.path)
        train = [s for s in loaded.split() if s.split == "train"]
        index, facts = fit_unknown(loaded.load_model(), loaded.inference, train, None, loaded.classes)
        index.save(run.path / facts["index"])
        runs.write_json(files.config, {**runs.read_json(files.config), "unknown": facts})


def _mark_val(run: runs.Run) -> runs.Run:
    """Val figures moved under `val_in_training`: the refit trained on those images."""
    files = runs.RunFiles(run.path)
    metrics = runs.read_json(files.metrics)
    if "val" in metrics:
        metrics["val_in_training"] = metrics.pop("val")
    runs.write_json(files.metrics, metrics)
    return runs.load_run(run.path)
