"""`imagefit refit RUN` (and `imagefit train --refit`): the run's recipe trained again on train + val.

On small datasets the 15 % held out for validation is worth points once the recipe is chosen
(AutoGluon's `refit_full`). The refit trains for the run's kept number of epochs and keeps the
last one (nothing is left to choose on), predicts with the settings the run chose on val
(evaluation size, test-time views, temperature; a multi-label run's thresholds), and sets its
unknown threshold from its own training embeddings (leave one out). Its test figures are honest;
its val figures are not (val is training data now): they are kept apart under `val_in_training`,
and the run's own val figures stand as the estimate (`val_estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagefit import runs
from imagefit.data import Sample
from imagefit.data.samples import ZIP_SEPARATOR, remote_url
from imagefit.errors import UserError

# What a refit takes from its source run's config.json rather than choosing it on val again.
CARRIED = ("inference", "inference_candidates", "prior_adjustment", "thresholds")
# Recipe fields a refit sets itself: the schedule is the source's kept epochs, kept to the last.
# A refit fine-tunes at its source's rate (under --lr auto, the one its range test found): no test of its own.
NOT_CARRIED = (
    "epochs",
    "frozen_epochs",
    "patience",
    "keep",
    "time_limit",
    "tune_inference",
    "refit",
    "soup",
    "lr_find",
)


@dataclass(frozen=True)
class RefitPlan:
    """What a refit trains on and how: the merged samples, the recipe overrides, the config.json fields carried."""

    source: runs.Run
    samples: list[Sample]
    overrides: dict
    carried: dict
    target: Path
    kept: int
    frozen: int

    def describe(self) -> str:
        return (
            f"refit: {sum(s.split == 'train' for s in self.samples)} images (train + val of {self.source.path.name}), "
            f"{self.kept} epochs ({self.frozen} head), the last kept; the val figures printed while it trains are "
            "on images it trains on, not an estimate"
        )


def plan_refit(run_path: str | Path, *, out: str | Path | None = None, time_limit: float = 0.0) -> RefitPlan:
    """RUN's train and val images merged, and its recipe for the kept number of epochs, the last one kept.

    `time_limit` (seconds, 0: none) bounds the refit as --time-limit does, the kept epochs its cap.
    """
    source = runs.load_run(Path(run_path))
    if source.config.get("raw_pixels_of"):
        parent = source.config["raw_pixels_of"]
        raise UserError(f"{source.path} is the raw-pixel SVM {parent} fitted, not a network: refit {parent}")
    kept = source.metrics.get("best_epoch")
    if not kept:
        raise UserError(f"{source.path} has no kept epoch in metrics.json; finish it first (imagefit train --resume)")
    samples = source.split()
    _check_present(source.path, samples)
    merged = [Sample(s.path, s.label, "train" if s.split == "val" else s.split) for s in samples]
    # The loop still validates each epoch: on the val images, which are training images now.
    merged += [s for s in samples if s.split == "val"]
    recipe = source.recipe
    frozen = min(recipe.schedule.frozen_epochs, kept)
    overrides = recipe_overrides(recipe, leave_out=NOT_CARRIED)
    overrides.update(epochs=kept, frozen_epochs=frozen, patience=10**6, keep="last", tune_inference=False, soup=False)
    overrides.update(lr_find=False)
    if time_limit:
        overrides["time_limit"] = f"{time_limit:.0f}s"
    carried = {"refit_of": str(source.path.resolve()), "val_estimate": source.metrics.get("val", {})}
    carried.update({key: source.config[key] for key in CARRIED if key in source.config})
    target = Path(out) if out else source.path.with_name(f"{source.path.name}-refit")
    return RefitPlan(source, merged, overrides, carried, target, kept, frozen)


def _check_present(run_path: Path, samples: list[Sample]) -> None:
    """UserError when none of RUN's local images (files, or the zips holding them) is where the run found them."""
    files = {s.path.split(ZIP_SEPARATOR)[0] for s in samples}
    local = sorted(f for f in files if not remote_url(f))
    if local and len(local) == len(files) and not any(Path(f).exists() for f in local):
        raise UserError(
            f"{run_path}: its images are not where it found them (e.g. {local[0]}). Put the data back, then refit"
        )


def recipe_overrides(recipe, *, leave_out: tuple[str, ...]) -> dict:
    """RECIPE as `group.name` overrides for `train`, the fields in LEAVE_OUT left to the new run's defaults."""
    return {
        f"{group}.{name}": value
        for group, values in recipe.to_dict().items()
        for name, value in values.items()
        if name not in leave_out
    }


def mark_val_as_training(files: runs.RunFiles) -> None:
    """A refit's val figures moved under `val_in_training`, and its source's val figures set as `val_estimate`."""
    metrics = runs.read_json(files.metrics)
    if "val" in metrics:
        metrics["val_in_training"] = metrics.pop("val")
    estimate = runs.ConfigRecord(files).values().get("val_estimate")
    if estimate:
        metrics["val_estimate"] = estimate
    runs.write_json(files.metrics, metrics)
