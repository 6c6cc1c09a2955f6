"""BatchNorm statistics re-estimated on the training images before anything trains (AdaBN, Li et al. 2016).

The pretrained backbone normalises each layer's inputs with ImageNet's statistics. On images far from those
photos (grayscale inspection images, scans, upsampled tiny pictures) the inputs drift from them layer after layer
(`imagefit.training.distance`), so the frozen backbone's features and the start of fine-tuning both rest on
mis-normalised activations. Here the statistics are replaced once, by the average over plain views of up to
RECALIBRATE_IMAGES training images (torch's `update_bn`, the pass SWA uses), in batches of RECALIBRATE_BATCH; they
stay frozen afterwards, as fine-tuning keeps them. Updating them during fine-tuning instead (`--finetune-bn`)
lost on every dataset tried: micro-batches of 8 give noisy estimates; this pass uses many images at once.
"""

from __future__ import annotations

import random

import torch
from torch.optim.swa_utils import update_bn

from imagefit.data.samples import Sample
from imagefit.data.transforms import eval_transform, transformed
from imagefit.prediction.moments import batchnorm_layers

RECALIBRATE_IMAGES = 512
RECALIBRATE_BATCH = 64


def recalibration_samples(samples: list[Sample], *, seed: int, count: int = RECALIBRATE_IMAGES) -> list[Sample]:
    """Up to COUNT training samples, chosen by SEED (the same in every process of a run)."""
    train = [s for s in samples if s.split == "train"]
    return sorted(random.Random(seed).sample(train, min(count, len(train))), key=lambda s: s.path)


@torch.no_grad()
def recalibrate_batchnorm(backbone: torch.nn.Module, samples: list[Sample], preprocess) -> int:
    """Set BACKBONE's BatchNorm statistics to those of SAMPLES' plain views; how many images were read (0: none,
    and nothing changed, as for a backbone without BatchNorm)."""
    if not batchnorm_layers(backbone):
        return 0
    transform = eval_transform(preprocess)
    device = next(backbone.parameters()).device
    memory_format = torch.channels_last if _channels_last(backbone) else torch.contiguous_format
    read = 0

    def batches():  # decoded one batch at a time: 512 views at 288 px would hold 0.5 GB at once
        nonlocal read
        for start in range(0, len(samples), RECALIBRATE_BATCH):
            chunk = samples[start : start + RECALIBRATE_BATCH]
            views, _ = transformed(chunk, transform, min_size=preprocess.resize_size)
            if views:
                read += len(views)
                yield torch.stack(views).to(device).contiguous(memory_format=memory_format)

    saved = {name: t.clone() for name, t in backbone.state_dict().items() if _is_statistic(name)}
    update_bn(batches(), backbone)  # leaves the backbone in the mode it found it in
    if not read:  # nothing readable: the pretrained statistics back
        backbone.load_state_dict(saved, strict=False)
    return read


def _is_statistic(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _channels_last(module: torch.nn.Module) -> bool:
    weight = next((p for p in module.parameters() if p.dim() == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last)
