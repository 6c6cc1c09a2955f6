"""`Recipe`: every group of fields together, read from and written to config.json, overridden by name, validated."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from imagefit.config.groups import (
    AugmentRecipe,
    DataRecipe,
    EngineRecipe,
    ModelRecipe,
    OptimRecipe,
    PredictRecipe,
    ScheduleRecipe,
)
from imagefit.config.values import (
    ACCELERATORS,
    PRECISIONS,
    check_devices,
    choice,
    coerce,
    field_type,
    format_value,
    parse_duration,
)
from imagefit.errors import UserError

# Fields whose default changed after runs were saved without them: the value those runs trained with.
WRITTEN_BEFORE = {"schedule": {"keep_frozen": 0.0}}


@dataclass
class Recipe:
    data: DataRecipe = field(default_factory=DataRecipe)
    model: ModelRecipe = field(default_factory=ModelRecipe)
    augment: AugmentRecipe = field(default_factory=AugmentRecipe)
    optim: OptimRecipe = field(default_factory=OptimRecipe)
    schedule: ScheduleRecipe = field(default_factory=ScheduleRecipe)
    engine: EngineRecipe = field(default_factory=EngineRecipe)
    predict: PredictRecipe = field(default_factory=PredictRecipe)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain JSON-ready nested dicts."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """A recipe from nested dicts (as `to_dict` gives); missing fields keep their defaults, except a field
        added after runs were written (`WRITTEN_BEFORE`): a saved group without it gets the value those runs
        trained with, so resuming or refitting an older run repeats its recipe."""
        recipe = cls()
        for group_name, group_values in values.items():
            earlier = {k: v for k, v in WRITTEN_BEFORE.get(group_name, {}).items() if k not in group_values}
            for name, value in {**group_values, **earlier}.items():
                recipe = recipe.override(**{f"{group_name}.{name}": value})
        return recipe

    def override(self, **overrides: Any) -> Recipe:
        """A copy with fields replaced; keys are bare field names or `group.field`, values are coerced."""
        groups = {f.name: dataclasses.replace(getattr(self, f.name)) for f in dataclasses.fields(self)}
        for key, value in overrides.items():
            if key.replace("-", "_") in ("lr", "optim.lr") and str(value).strip().lower() == "auto":
                key, value = "lr_find", True  # --lr auto: the fine-tuning rate from a range test
            group_name, name = _locate(key)
            group = groups[group_name]
            setattr(group, name, coerce(key, value, field_type(type(group), name)))
        recipe = Recipe(**groups)
        recipe.validate()
        return recipe

    def validate(self) -> None:
        """Raise UserError for values no training could use."""
        choice("imbalance", self.data.imbalance, ("auto", "adjust", "weights", "sampler", "none"))
        choice("auto_augment", self.augment.auto_augment, ("none", "trivial", "randaugment"))
        choice("resize", self.model.resize, ("crop", "squash", "pad"))
        choice("keep", self.schedule.keep, ("best", "last"))
        choice("init", self.model.init, ("imagenet", "clip"))
        if not 0 <= self.data.val_split < 1 or not 0 <= self.data.test_split < 1:
            raise UserError("val_split and test_split must be between 0 and 1, e.g. --val-split 0.15")
        if self.schedule.epochs < 1 or not 0 <= self.schedule.frozen_epochs <= self.schedule.epochs:
            raise UserError(
                f"need 1 <= epochs and 0 <= frozen_epochs <= epochs, got epochs={self.schedule.epochs} "
                f"frozen_epochs={self.schedule.frozen_epochs}"
            )
        self._check_ranges()
        micro = self.data.micro_batch
        if micro < -1 or (micro > 0 and self.data.batch_size % micro):
            raise UserError(
                f"micro_batch must divide batch_size ({self.data.batch_size}), got {micro} (0: off, -1: auto)"
            )
        self._check_schedule()
        choice("accelerator", self.engine.accelerator, ACCELERATORS)
        choice("precision", self.engine.precision, PRECISIONS)
        choice("logger", self.engine.logger, ("csv", "tensorboard", "mlflow", "none"))
        check_devices(self.engine.devices)

    def _check_ranges(self) -> None:
        """Numbers outside what their option means: one line naming the option, its range and the value."""
        for bound in RANGES:
            value = getattr(getattr(self, bound.group), bound.name)
            if not bound.holds(value):
                option = "--" + bound.name.replace("_", "-")
                raise UserError(f"{bound.name} must be {bound.said()}, got {value:g} ({option})")

    def _check_schedule(self) -> None:
        schedule = self.schedule
        if self.optim.lr_find and not schedule.cached_head and schedule.frozen_epochs > 0:
            raise UserError(
                "--lr auto tests the fine-tuning rate once the head is trained on cached features: "
                "drop --cached-head false (or set --frozen-epochs 0)"
            )
        share = schedule.progressive_size
        if share and not 0.25 <= share < 1:
            raise UserError(f"progressive_size must be 0 (off) or from 0.25 to below 1, e.g. 0.75; got {share}")
        if share and schedule.time_limit:
            raise UserError("--progressive-size is not planned by --time-limit yet: use one of the two")
        parse_duration(schedule.time_limit)


class Range(NamedTuple):
    """What a number option can mean: from LOW (excluded when `low_open`) to HIGH (None: no top; excluded when
    `high_open`), and a hint for the message."""

    group: str
    name: str
    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    hint: str = ""

    def holds(self, value: float) -> bool:
        below = value < self.low or (self.low_open and value == self.low)
        above = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        return not (below or above)

    def said(self) -> str:
        start = f"above {self.low:g}" if self.low_open else f"at least {self.low:g}"
        end = "" if self.high is None else f" and {'below' if self.high_open else 'at most'} {self.high:g}"
        return f"{start}{end}{self.hint}"


RANGES = (
    Range("data", "batch_size", 1),
    Range("optim", "lr", 0.0, low_open=True),
    Range("optim", "finetune_lr_ratio", 0.0, low_open=True),
    Range("optim", "layer_decay", 0.0, 1.0, low_open=True, hint=" (1: off)"),
    Range("optim", "weight_decay", 0.0),
    Range("optim", "label_smoothing", 0.0, 1.0, high_open=True),
    Range("model", "dropout", 0.0, 1.0, high_open=True),
    Range("model", "image_size", 0.0),
    Range("augment", "crop_scale", 0.0, 1.0, low_open=True),
    Range("augment", "rotate", 0.0, 180.0),
    Range("augment", "color_jitter", 0.0),
    Range("augment", "mixup", 0.0),
    Range("augment", "cutmix", 0.0),
    Range("data", "class_weight_power", 0.0),
    Range("data", "imbalance_ratio", 1.0),
    Range("schedule", "warmup_epochs", 0.0),
    Range("schedule", "patience", 0.0),
    Range("schedule", "ema_epochs", 0.0),
    Range("schedule", "keep_frozen", 0.0, 1.0, high_open=True, hint=" (0: every layer trains)"),
    Range("schedule", "head_views", 1, hint=" (the plain view)"),
    Range("engine", "num_nodes", 1),
)


def fit_epochs(overrides: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Overrides where asking for fewer epochs than the default frozen (head) epochs also lowers those; and a note.

    Half the epochs (at least one) go to the head, as with the defaults: `--epochs 1` trains the
    head alone, `--epochs 2` one head and one fine-tuning epoch.
    """
    epochs_key = next((k for k in overrides if k.replace("-", "_") in ("epochs", "schedule.epochs")), None)
    frozen_given = any(k.replace("-", "_") in ("frozen_epochs", "schedule.frozen_epochs") for k in overrides)
    if epochs_key is None or frozen_given:
        return overrides, ""
    epochs = coerce("epochs", overrides[epochs_key], int)
    default = ScheduleRecipe().frozen_epochs
    if epochs < 1 or epochs > default:
        return overrides, ""
    frozen = max(1, epochs // 2)
    note = f"note: --epochs {epochs} is not above the {default} default head epochs: training {frozen} head epoch"
    note += f"{'s' if frozen > 1 else ''} and {epochs - frozen} fine-tuning (--frozen-epochs sets it)"
    return {**overrides, "frozen_epochs": frozen}, note


def field_help() -> list[tuple[str, str, str]]:
    """(name, default, help) for every recipe field, for `imagefit train --help`."""
    rows = []
    for group in dataclasses.fields(Recipe):
        for f in dataclasses.fields(group.default_factory()):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f.name, format_value(default), f.metadata.get("help", "")))
    return rows


def _field_index() -> dict[str, tuple[str, str]]:
    index = {}
    for group in dataclasses.fields(Recipe):
        for f in dataclasses.fields(group.default_factory()):
            index[f.name] = (group.name, f.name)
            index[f"{group.name}.{f.name}"] = (group.name, f.name)
    return index


def _locate(key: str) -> tuple[str, str]:
    index = _field_index()
    normalised = key.replace("-", "_")
    if normalised in index:
        return index[normalised]
    close = difflib.get_close_matches(normalised, list(index), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else " See `imagefit train --help` for the list."
    raise UserError(f"unknown recipe option '{key}'.{hint}")
