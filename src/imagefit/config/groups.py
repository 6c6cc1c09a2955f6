"""The recipe's groups of fields, one documented field each (data, model, augment, optim, schedule, engine,
predict)."""

from __future__ import annotations

from dataclasses import dataclass, field

# With micro_batch -1 on a CPU: the fastest forward-pass size measured for lite0 at 192 px (benchmarks/micro_batch.py).
AUTO_MICRO_BATCH = 8


def doc(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DataRecipe:
    val_split: float = field(
        default=0.15, metadata=doc("share of each class held out for validation when DATA has no val split")
    )
    test_split: float = field(
        default=0.0, metadata=doc("share of each class held out as a test split when DATA has no test split")
    )
    seed: int = field(default=42, metadata=doc("seed for the split, the augmentation and the weights of new layers"))
    batch_size: int = field(default=32, metadata=doc("images per step on each device"))
    micro_batch: int = field(
        default=-1,
        metadata=doc(
            "images per forward pass in fine-tuning, gradients accumulated to batch_size (less memory; the same "
            f"steps while BatchNorm statistics are frozen); 0: batch_size; -1: {AUTO_MICRO_BATCH} on a CPU while "
            "BatchNorm statistics are frozen (faster and smaller there), else batch_size"
        ),
    )
    num_workers: int = field(default=-1, metadata=doc("data-loader worker processes; -1 picks from the CPU count"))

    @property
    def forward_batch(self) -> int:
        """Images in one forward pass of fine-tuning: micro_batch when set (above 0), else batch_size."""
        return self.micro_batch if self.micro_batch > 0 else self.batch_size

    imbalance: str = field(
        default="auto",
        metadata=doc(
            "auto | adjust | weights | sampler | none: how unequal class sizes are handled. adjust trains on the "
            "plain loss and shifts the logits by tau x log class prior, tau chosen on val for macro-F1 (logit "
            "adjustment); weights weighs the loss by inverse class frequency"
        ),
    )
    imbalance_ratio: float = field(
        default=1.5, metadata=doc("auto adjusts the logits once largest/smallest class exceeds this")
    )
    class_weight_power: float = field(
        default=1.0,
        metadata=doc(
            "class weights are (n / (k * count)) ** power: 1 balances the classes fully (scikit-learn's "
            "'balanced'), 0.5 takes the square root (a rare class weighs less), 0 weighs every class alike"
        ),
    )


@dataclass
class ModelRecipe:
    model: str = field(
        default="tf_efficientnet_lite1", metadata=doc("any timm model name (`timm.list_models()`); lite1 from stop 24")
    )
    pretrained: bool = field(
        default=True, metadata=doc("start from ImageNet weights (offline packages first, then timm's hub)")
    )
    init: str = field(
        default="imagenet",
        metadata=doc(
            "imagenet | clip: start from `model` with its pretrained weights and a new head, or from CLIP's image "
            "tower (`clip_model`) with a head made from the class names (the zero-shot classifier)"
        ),
    )
    clip_model: str = field(
        default="ViT-B-32/laion2b_s34b_b79k",
        metadata=doc("open_clip model/weights for --init clip (weights: a tag from its hub, or a checkpoint file)"),
    )
    init_weights: str = field(
        default="",
        metadata=doc(
            "a run folder whose weights start training (the same model and classes); `--unlabelled` sets it for "
            "its students"
        ),
    )

    @property
    def backbone(self) -> str:
        """The backbone's name as people read it: the timm model, or `clip:` and the open_clip model."""
        return f"clip:{self.clip_model}" if self.init == "clip" else self.model

    image_size: int = field(default=0, metadata=doc("square input size in pixels; 0 takes the model's own"))
    cpu_max_image_size: int = field(
        default=192, metadata=doc("with image_size 0 on a CPU, cap the model's size here (0: no cap); 2x faster")
    )
    resize: str = field(
        default="crop",
        metadata=doc(
            "crop | squash | pad: how a picture becomes a square. crop keeps the centre at evaluation (timm's way); "
            "squash resizes the whole picture (aspect ratio changed, every edge kept); pad resizes its longer side and "
            "pads the shorter with black (aspect ratio and every edge kept); adapt squashes data far from photos"
        ),
    )
    head: tuple[int, ...] = field(
        default=(), metadata=doc("hidden sizes of the head, e.g. 512,256 (Linear-BN-ReLU-Dropout each)")
    )
    dropout: float = field(default=0.2, metadata=doc("dropout before the last linear layer"))


@dataclass
class AugmentRecipe:
    crop_scale: float = field(default=0.35, metadata=doc("smallest area share kept by the random resized crop"))
    hflip: bool = field(default=True, metadata=doc("random horizontal flips"))
    vflip: bool = field(
        default=False, metadata=doc("random vertical flips (for images with no 'up': plants, insects, cells)")
    )
    rotate: float = field(default=0.0, metadata=doc("random rotation up to this many degrees (180 for any angle)"))
    color_jitter: float = field(default=0.2, metadata=doc("strength of random brightness/contrast/saturation changes"))
    auto_augment: str = field(default="none", metadata=doc("none | trivial | randaugment"))
    mixup: float = field(default=0.0, metadata=doc("MixUp alpha (0 turns it off), through timm's Mixup"))
    cutmix: float = field(default=0.0, metadata=doc("CutMix alpha (0 turns it off), through timm's Mixup"))


@dataclass
class OptimRecipe:
    optimizer: str = field(default="adamw", metadata=doc("any timm optimizer name (timm.optim.create_optimizer_v2)"))
    lr: float = field(default=1e-3, metadata=doc("learning rate of the head while the backbone is frozen"))
    finetune_lr_ratio: float = field(
        default=0.1, metadata=doc("learning rate of the whole network in phase 2, as a share of lr")
    )
    lr_find: bool = field(
        default=False,
        metadata=doc(
            "before fine-tuning, a learning-rate range test (Lightning's lr_find, 50 steps, as fastai's) on the "
            "network with its trained head; fine-tuning runs at its suggestion (finetune_lr_ratio follows from it). "
            "`--lr auto` turns it on"
        ),
    )
    layer_decay: float = field(
        default=1.0,
        metadata=doc(
            "layer-wise learning-rate decay: each backbone layer below the head trains at this share of the rate "
            "of the one above it (timm's group_matcher layers; 1.0 turns it off, BEiT used 0.65-0.75)"
        ),
    )
    weight_decay: float = field(default=0.05, metadata=doc("decoupled weight decay; none on norms and biases"))
    label_smoothing: float = field(default=0.1, metadata=doc("label smoothing of the cross-entropy loss"))


@dataclass
class ScheduleRecipe:
    frozen_epochs: int = field(default=3, metadata=doc("phase 1: epochs training the head with the backbone frozen"))
    epochs: int = field(default=10, metadata=doc("all epochs, both phases; epochs == frozen_epochs never unfreezes"))
    warmup_epochs: float = field(default=0.5, metadata=doc("linear warm-up at the start of phase 2, in epochs"))
    patience: int = field(
        default=10,
        metadata=doc(
            "phase 2 stops after this many epochs without a lower val loss (10: the default 7 fine-tuning "
            "epochs always run out, their cosine ends where val loss is lowest; longer runs still stop early)"
        ),
    )
    keep: str = field(
        default="best", metadata=doc("best | last: keep the epoch with the lowest val loss, or the last one")
    )
    finetune_bn: bool = field(
        default=False,
        metadata=doc(
            "phase 2 updates the backbone's BatchNorm statistics (off: kept at their pretrained values, "
            "as Keras's transfer-learning guide advises for small data)"
        ),
    )
    ema_epochs: float = field(
        default=2.0,
        metadata=doc(
            "average the weights over about this many recent fine-tuning epochs (EMA; validation and the kept "
            "model use the average) in runs of at least twice that many fine-tuning epochs; 0 turns it off"
        ),
    )
    progressive_size: float = field(
        default=0.0,
        metadata=doc(
            "progressive resizing (fastai): the first half of the fine-tuning epochs train on images of this share "
            "of the size (0.75: 144 px for 192), the rest at full size; validation always at full size; 0 turns it off"
        ),
    )
    keep_frozen: float = field(
        default=0.01,
        metadata=doc(
            "fine-tuning leaves frozen the backbone's first layers (whole timm group_matcher layers, from the input) "
            "holding up to this share of its parameters: the high-resolution stem and first blocks hold few "
            "weights but cost much of a CPU's backward pass (detectron2 freezes the stem and first stage); "
            "0 trains every layer"
        ),
    )
    soup: bool = field(
        default=False,
        metadata=doc(
            "after fine-tuning, average the weights of the kept epoch with the other epochs that lower val loss "
            "(a greedy model soup, best val loss first, up to 5 epochs tried); one model, as fast to predict"
        ),
    )
    adapt: bool = field(
        default=True,
        metadata=doc(
            "measure how far the images are from the pretraining photos (BatchNorm input shift) and, when far, "
            "fine-tune at a higher rate; crop less of images of 64 px or less (options you set stay as set)"
        ),
    )
    probe: bool = field(
        default=False,
        metadata=doc(
            "on far data (adapt), choose the fine-tuning rate by a probe: 8 steps at each of 0.1, 0.3 and 1 of lr "
            "from the trained head, the rate whose loss on held training images fell clearly most (off by default: "
            "on digits it chose 0.1 where 0.3 wins; benchmarks/RESULTS.md)"
        ),
    )
    cached_head: bool = field(
        default=True,
        metadata=doc(
            "phase 1 trains the head on backbone features computed once and cached on disk, "
            "seconds an epoch (false: through the frozen backbone every epoch)"
        ),
    )
    solve_head: bool = field(
        default=False,
        metadata=doc(
            "after the head's epochs on cached features, also solve it as a logistic regression (scikit-learn, "
            "L-BFGS) and keep whichever has the lower val loss: fine-tuning starts from a converged head (LP-FT; "
            "off by default: magnetic-tiles lost 0.21 test accuracy with it, benchmarks/RESULTS.md)"
        ),
    )
    head_views: int = field(
        default=3, metadata=doc("views of each training image in the feature cache: the plain one, then augmented")
    )
    time_limit: str = field(
        default="", metadata=doc("finish training within this wall time (90s, 10m, 1.5h): epochs planned to fit")
    )
    refit: bool = field(
        default=False,
        metadata=doc(
            "after the run, train again on train + val for the epochs it kept (RUN-refit, AutoGluon's "
            "refit_full); its figures: the run's val as the estimate, test where there is one"
        ),
    )


@dataclass
class EngineRecipe:
    accelerator: str = field(default="auto", metadata=doc("cpu | gpu | mps | auto (Lightning Trainer)"))
    devices: str = field(default="auto", metadata=doc("number of devices, or a list like 0,1 (Lightning Trainer)"))
    strategy: str = field(default="auto", metadata=doc("auto | ddp | ddp_spawn | fsdp ... (Lightning Trainer)"))
    num_nodes: int = field(default=1, metadata=doc("machines for multi-node DDP (Lightning Trainer)"))
    channels_last: bool = field(
        default=True, metadata=doc("NHWC memory format: 1.6-1.7x faster convolutions on CPU (benchmarks/RESULTS.md)")
    )
    precision: str = field(
        default="auto", metadata=doc("auto (bf16/fp16 mixed on GPU, fp32 on CPU) or a Lightning value")
    )
    logger: str = field(
        default="csv",
        metadata=doc(
            "csv | tensorboard | mlflow | none: Lightning's logger for fine-tuning (RUN/logs; mlflow: "
            "$MLFLOW_TRACKING_URI or ./mlflow.db); history.csv is written either way"
        ),
    )


@dataclass
class PredictRecipe:
    tune_inference: bool = field(
        default=True,
        metadata=doc(
            "after training, choose on val the evaluation size (up to 1.3x the training size), mirror TTA and "
            "a temperature for calibrated confidences; predict, evaluate and export use them"
        ),
    )
    latency: bool = field(
        default=False,
        metadata=doc(
            "favour speed in what tune_inference chooses: one view at the training size (the mirror is still "
            "measured on val, so config.json says what it would have bought and what it costs)"
        ),
    )
    unknown_index: bool = field(
        default=True,
        metadata=doc(
            "keep training embeddings (up to 5,000) to flag images unlike every class; the threshold flags 5% of "
            "val images (predict --full: unknown, unknown_score)"
        ),
    )
