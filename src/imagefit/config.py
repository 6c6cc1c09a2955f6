"""The recipe: every default of a training run, one documented field each, saved with every run.

`Recipe` groups the fields by concern (data, model, augment, optim, schedule, engine). Field names
are unique across groups, so a user overrides any of them by its bare name (`epochs=8`,
`--epochs 8`) or by its dotted path (`schedule.epochs=8`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from imagefit.errors import UserError

# With micro_batch -1 on a CPU: the fastest forward-pass size measured for lite0 at 192 px (benchmarks/micro_batch.py).
AUTO_MICRO_BATCH = 8


def _doc(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DataRecipe:
    val_split: float = field(
        default=0.15, metadata=_doc("share of each class held out for validation when DATA has no val split")
    )
    test_split: float = field(
        default=0.0, metadata=_doc("share of each class held out as a test split when DATA has no test split")
    )
    seed: int = field(default=42, metadata=_doc("seed for the split, the augmentation and the weights of new layers"))
    batch_size: int = field(default=32, metadata=_doc("images per step on each device"))
    micro_batch: int = field(
        default=-1,
        metadata=_doc(
            "images per forward pass in fine-tuning, gradients accumulated to batch_size (less memory; the same "
            f"steps while BatchNorm statistics are frozen); 0: batch_size; -1: {AUTO_MICRO_BATCH} on a CPU while "
            "BatchNorm statistics are frozen (faster and smaller there), else batch_size"
        ),
    )
    num_workers: int = field(default=-1, metadata=_doc("data-loader worker processes; -1 picks from the CPU count"))

    @property
    def forward_batch(self) -> int:
        """Images in one forward pass of fine-tuning: micro_batch when set (above 0), else batch_size."""
        return self.micro_batch if self.micro_batch > 0 else self.batch_size

    imbalance: str = field(
        default="auto", metadata=_doc("auto | weights | sampler | none: how unequal class sizes are handled")
    )
    imbalance_ratio: float = field(
        default=1.5, metadata=_doc("auto uses class weights once largest/smallest class exceeds this")
    )


@dataclass
class ModelRecipe:
    model: str = field(
        default="tf_efficientnet_lite1", metadata=_doc("any timm model name (`timm.list_models()`); lite1 from stop 24")
    )
    pretrained: bool = field(
        default=True, metadata=_doc("start from ImageNet weights (offline packages first, then timm's hub)")
    )
    init: str = field(
        default="imagenet",
        metadata=_doc(
            "imagenet | clip: start from `model` with its pretrained weights and a new head, or from CLIP's image "
            "tower (`clip_model`) with a head made from the class names (the zero-shot classifier)"
        ),
    )
    clip_model: str = field(
        default="ViT-B-32/laion2b_s34b_b79k",
        metadata=_doc("open_clip model/weights for --init clip (weights: a tag from its hub, or a checkpoint file)"),
    )

    @property
    def backbone(self) -> str:
        """The backbone's name as people read it: the timm model, or `clip:` and the open_clip model."""
        return f"clip:{self.clip_model}" if self.init == "clip" else self.model

    image_size: int = field(default=0, metadata=_doc("square input size in pixels; 0 takes the model's own"))
    cpu_max_image_size: int = field(
        default=192, metadata=_doc("with image_size 0 on a CPU, cap the model's size here (0: no cap); 2x faster")
    )
    head: tuple[int, ...] = field(
        default=(), metadata=_doc("hidden sizes of the head, e.g. 512,256 (Linear-BN-ReLU-Dropout each)")
    )
    dropout: float = field(default=0.2, metadata=_doc("dropout before the last linear layer"))


@dataclass
class AugmentRecipe:
    crop_scale: float = field(default=0.35, metadata=_doc("smallest area share kept by the random resized crop"))
    hflip: bool = field(default=True, metadata=_doc("random horizontal flips"))
    vflip: bool = field(
        default=False, metadata=_doc("random vertical flips (for images with no 'up': plants, insects, cells)")
    )
    rotate: float = field(default=0.0, metadata=_doc("random rotation up to this many degrees (180 for any angle)"))
    color_jitter: float = field(default=0.2, metadata=_doc("strength of random brightness/contrast/saturation changes"))
    auto_augment: str = field(default="none", metadata=_doc("none | trivial | randaugment"))
    mixup: float = field(default=0.0, metadata=_doc("MixUp alpha (0 turns it off), through timm's Mixup"))
    cutmix: float = field(default=0.0, metadata=_doc("CutMix alpha (0 turns it off), through timm's Mixup"))


@dataclass
class OptimRecipe:
    optimizer: str = field(default="adamw", metadata=_doc("any timm optimizer name (timm.optim.create_optimizer_v2)"))
    lr: float = field(default=1e-3, metadata=_doc("learning rate of the head while the backbone is frozen"))
    finetune_lr_ratio: float = field(
        default=0.1, metadata=_doc("learning rate of the whole network in phase 2, as a share of lr")
    )
    lr_find: bool = field(
        default=False,
        metadata=_doc(
            "before fine-tuning, a learning-rate range test (Lightning's lr_find, 50 steps, as fastai's) on the "
            "network with its trained head; fine-tuning runs at its suggestion (finetune_lr_ratio follows from it). "
            "`--lr auto` turns it on"
        ),
    )
    layer_decay: float = field(
        default=1.0,
        metadata=_doc(
            "layer-wise learning-rate decay: each backbone layer below the head trains at this share of the rate "
            "of the one above it (timm's group_matcher layers; 1.0 turns it off, BEiT used 0.65-0.75)"
        ),
    )
    weight_decay: float = field(default=0.05, metadata=_doc("decoupled weight decay; none on norms and biases"))
    label_smoothing: float = field(default=0.1, metadata=_doc("label smoothing of the cross-entropy loss"))


@dataclass
class ScheduleRecipe:
    frozen_epochs: int = field(default=3, metadata=_doc("phase 1: epochs training the head with the backbone frozen"))
    epochs: int = field(default=10, metadata=_doc("all epochs, both phases; epochs == frozen_epochs never unfreezes"))
    warmup_epochs: float = field(default=0.5, metadata=_doc("linear warm-up at the start of phase 2, in epochs"))
    patience: int = field(
        default=10,
        metadata=_doc(
            "phase 2 stops after this many epochs without a lower val loss (10: the default 7 fine-tuning "
            "epochs always run out, their cosine ends where val loss is lowest; longer runs still stop early)"
        ),
    )
    keep: str = field(
        default="best", metadata=_doc("best | last: keep the epoch with the lowest val loss, or the last one")
    )
    finetune_bn: bool = field(
        default=False,
        metadata=_doc(
            "phase 2 updates the backbone's BatchNorm statistics (off: kept at their pretrained values, "
            "as Keras's transfer-learning guide advises for small data)"
        ),
    )
    ema_epochs: float = field(
        default=0.0,
        metadata=_doc(
            "average the weights over about this many recent fine-tuning epochs (EMA; validation and the kept "
            "model use the average); 0 turns it off"
        ),
    )
    progressive_size: float = field(
        default=0.0,
        metadata=_doc(
            "progressive resizing (fastai): the first half of the fine-tuning epochs train on images of this share "
            "of the size (0.75: 144 px for 192), the rest at full size; validation always at full size; 0 turns it off"
        ),
    )
    keep_frozen: float = field(
        default=0.01,
        metadata=_doc(
            "fine-tuning leaves frozen the backbone's first layers (whole timm group_matcher layers, from the input) "
            "holding up to this share of its parameters: the high-resolution stem and first blocks hold few "
            "weights but cost much of a CPU's backward pass (detectron2 freezes the stem and first stage); "
            "0 trains every layer"
        ),
    )
    soup: bool = field(
        default=False,
        metadata=_doc(
            "after fine-tuning, average the weights of the kept epoch with the other epochs that lower val loss "
            "(a greedy model soup, best val loss first, up to 5 epochs tried); one model, as fast to predict"
        ),
    )
    adapt: bool = field(
        default=True,
        metadata=_doc(
            "measure how far the images are from the pretraining photos (BatchNorm input shift) and, when far, "
            "fine-tune at a higher rate; crop less of images of 64 px or less (options you set stay as set)"
        ),
    )
    cached_head: bool = field(
        default=True,
        metadata=_doc(
            "phase 1 trains the head on backbone features computed once and cached on disk, "
            "seconds an epoch (false: through the frozen backbone every epoch)"
        ),
    )
    head_views: int = field(
        default=3, metadata=_doc("views of each training image in the feature cache: the plain one, then augmented")
    )
    time_limit: str = field(
        default="", metadata=_doc("finish training within this wall time (90s, 10m, 1.5h): epochs planned to fit")
    )
    refit: bool = field(
        default=False,
        metadata=_doc(
            "after the run, train again on train + val for the epochs it kept (RUN-refit, AutoGluon's "
            "refit_full); its figures: the run's val as the estimate, test where there is one"
        ),
    )


@dataclass
class EngineRecipe:
    accelerator: str = field(default="auto", metadata=_doc("cpu | gpu | mps | auto (Lightning Trainer)"))
    devices: str = field(default="auto", metadata=_doc("number of devices, or a list like 0,1 (Lightning Trainer)"))
    strategy: str = field(default="auto", metadata=_doc("auto | ddp | ddp_spawn | fsdp ... (Lightning Trainer)"))
    num_nodes: int = field(default=1, metadata=_doc("machines for multi-node DDP (Lightning Trainer)"))
    channels_last: bool = field(
        default=True, metadata=_doc("NHWC memory format: 1.6-1.7x faster convolutions on CPU (benchmarks/RESULTS.md)")
    )
    precision: str = field(
        default="auto", metadata=_doc("auto (bf16/fp16 mixed on GPU, fp32 on CPU) or a Lightning value")
    )
    logger: str = field(
        default="csv",
        metadata=_doc(
            "csv | tensorboard | mlflow | none: Lightning's logger for fine-tuning (RUN/logs; mlflow: "
            "$MLFLOW_TRACKING_URI or ./mlflow.db); history.csv is written either way"
        ),
    )


@dataclass
class PredictRecipe:
    tune_inference: bool = field(
        default=True,
        metadata=_doc(
            "after training, choose on val the evaluation size (up to 1.3x the training size), mirror TTA and "
            "a temperature for calibrated confidences; predict, evaluate and export use them"
        ),
    )
    unknown_index: bool = field(
        default=True,
        metadata=_doc(
            "keep training embeddings (up to 5,000) to flag images unlike every class; the threshold flags 5% of "
            "val images (predict --full: unknown, unknown_score)"
        ),
    )


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
            setattr(group, name, _coerce(key, value, _field_type(type(group), name)))
        recipe = Recipe(**groups)
        recipe.validate()
        return recipe

    def validate(self) -> None:
        """Raise UserError for values no training could use."""
        _choice("imbalance", self.data.imbalance, ("auto", "weights", "sampler", "none"))
        _choice("auto_augment", self.augment.auto_augment, ("none", "trivial", "randaugment"))
        _choice("keep", self.schedule.keep, ("best", "last"))
        _choice("init", self.model.init, ("imagenet", "clip"))
        if not 0 <= self.data.val_split < 1 or not 0 <= self.data.test_split < 1:
            raise UserError("val_split and test_split must be between 0 and 1, e.g. --val-split 0.15")
        if self.schedule.epochs < 1 or not 0 <= self.schedule.frozen_epochs <= self.schedule.epochs:
            raise UserError(
                f"need 1 <= epochs and 0 <= frozen_epochs <= epochs, got epochs={self.schedule.epochs} "
                f"frozen_epochs={self.schedule.frozen_epochs}"
            )
        if self.data.batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {self.data.batch_size}")
        micro = self.data.micro_batch
        if micro < -1 or (micro > 0 and self.data.batch_size % micro):
            raise UserError(
                f"micro_batch must divide batch_size ({self.data.batch_size}), got {micro} (0: off, -1: auto)"
            )
        if not 0 < self.optim.layer_decay <= 1:
            raise UserError(f"layer_decay must be above 0 and at most 1 (1: off), got {self.optim.layer_decay}")
        self._check_schedule()
        _choice("accelerator", self.engine.accelerator, ACCELERATORS)
        _choice("precision", self.engine.precision, PRECISIONS)
        _choice("logger", self.engine.logger, ("csv", "tensorboard", "mlflow", "none"))
        _check_devices(self.engine.devices)
        if self.engine.num_nodes < 1:
            raise UserError(f"num_nodes must be at least 1, got {self.engine.num_nodes}")

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
        if not 0 <= schedule.keep_frozen < 1:
            raise UserError(f"keep_frozen must be from 0 (every layer trains) to below 1, got {schedule.keep_frozen}")
        if schedule.head_views < 1:
            raise UserError(f"head_views must be at least 1 (the plain view), got {schedule.head_views}")
        parse_duration(schedule.time_limit)


# Fields whose default changed after runs were saved without them: the value those runs trained with.
WRITTEN_BEFORE = {"schedule": {"keep_frozen": 0.0}}

# What Lightning's Trainer takes (its accelerator registry and precision strings); strategies are
# checked against Lightning's own registry when training starts (training/engine.py).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
PRECISIONS = (
    "auto",
    "32-true",
    "32",
    "16-mixed",
    "16",
    "bf16-mixed",
    "bf16",
    "16-true",
    "bf16-true",
    "64-true",
    "64",
    "transformer-engine",
    "transformer-engine-float16",
)


def _check_devices(text: str) -> None:
    """devices: auto, a count (-1 for all), or a comma list of device indices."""
    text = str(text).strip()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if text == "auto":
        return
    if "," in text:  # indices: 0,1 (or "0," for the first device alone)
        valid = bool(parts) and all(p.isdigit() for p in parts)
    else:
        valid = text.lstrip("-").isdigit() and (int(text) >= 1 or text == "-1")
    if not valid:
        raise UserError(f"devices={text!r} is not a device count or list: use auto, 1, 4, -1 (all) or 0,1")


def fit_epochs(overrides: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Overrides where asking for fewer epochs than the default frozen (head) epochs also lowers those; and a note.

    Half the epochs (at least one) go to the head, as with the defaults: `--epochs 1` trains the
    head alone, `--epochs 2` one head and one fine-tuning epoch.
    """
    epochs_key = next((k for k in overrides if k.replace("-", "_") in ("epochs", "schedule.epochs")), None)
    frozen_given = any(k.replace("-", "_") in ("frozen_epochs", "schedule.frozen_epochs") for k in overrides)
    if epochs_key is None or frozen_given:
        return overrides, ""
    epochs = _coerce("epochs", overrides[epochs_key], int)
    default = ScheduleRecipe().frozen_epochs
    if epochs < 1 or epochs > default:
        return overrides, ""
    frozen = max(1, epochs // 2)
    note = f"note: --epochs {epochs} is not above the {default} default head epochs: training {frozen} head epoch"
    note += f"{'s' if frozen > 1 else ''} and {epochs - frozen} fine-tuning (--frozen-epochs sets it)"
    return {**overrides, "frozen_epochs": frozen}, note


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '10m' or '1.5h'; 0 for '' (no limit). UserError for anything else."""
    text = str(text).strip().lower()
    if not text or text in ("0", "none"):
        return 0.0
    number, unit = (text[:-1], text[-1]) if text[-1] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UserError(f"time_limit '{text}' is not a duration: write it like 90s, 10m or 1.5h")
    return seconds


def field_help() -> list[tuple[str, str, str]]:
    """(name, default, help) for every recipe field, for `imagefit train --help`."""
    rows = []
    for group in dataclasses.fields(Recipe):
        for f in dataclasses.fields(group.default_factory()):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f.name, _format_value(default), f.metadata.get("help", "")))
    return rows


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


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


def _field_type(group_cls: type, name: str) -> Any:
    return typing.get_type_hints(group_cls)[name]


def _coerce(key: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
        origin = typing.get_origin(kind)
    try:
        if origin is tuple:
            return _to_int_tuple(value)
        if kind is bool:
            return _to_bool(value)
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"option '{key}' expects {getattr(kind, '__name__', kind)}, got {value!r}") from exc


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _to_int_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    text = str(value).strip().lower()
    if text in ("", "none", "0"):
        return ()
    return tuple(int(part) for part in text.split(","))


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name}={value!r} is not one of: {', '.join(choices)}")
