"""How far a dataset is from the images a backbone was pretrained on, measured before fine-tuning.

BatchNorm layers carry the pretrained data's per-channel mean and variance of their inputs. On
images like the pretraining photos, a batch of the new data gives inputs close to those
statistics; on scans, grayscale inspection images or upsampled 8 px digits they drift far
(AdaBN, Li et al. 2016). `batchnorm_shift` is the mean over BatchNorm layers of the per-channel
|data mean - running mean| / running std, on plain (evaluation) views.
"""

from __future__ import annotations

import torch
from torch import nn

from imagefit.prediction.moments import MomentRecorder

# Measured with tf_efficientnet_lite0 at 192 px (benchmarks/data_distance.py): photos 0.15-0.16
# (clothing, hymenoptera), upsampled 32 px CIFAR 0.28, upsampled 8 px digits 0.41.
FAR_SHIFT = 0.22
# When far, the whole network fine-tunes at this share of the head's learning rate (instead of the
# recipe's 0.1). Updating the BatchNorm statistics as well lost on every dataset tried, far ones
# included; measured in benchmarks/RESULTS.md. Far pictures are also squashed whole to a square instead of
# centre-cropped (--resize squash): inspection images keep the defects at their edges, and upsampled tiny
# images their borders; on photos it lost (benchmarks/RESULTS.md, stop 38). And far pictures train whole, not on
# random crops (crop_scale 1.0; flips and colour changes stay): a crop of a third of an inspection image often
# leaves out the defect its label names (magnetic-tiles' edge breaks, blowholes), teaching that a `break` looks
# like a `free` tile (benchmarks/RESULTS.md, stop 46).
FAR_FINETUNE = {"finetune_lr_ratio": 0.3, "resize": "squash", "crop_scale": 1.0}
# Images this small (median shorter side, in pixels) are upsampled many times over: a random crop
# of a third of one loses the object, so crops keep at least SMALL_CROP_SCALE of the picture.
SMALL_SIDE = 64
SMALL_CROP_SCALE = 0.7


@torch.no_grad()
def batchnorm_shift(backbone: nn.Module, images: torch.Tensor, *, batch_size: int = 32) -> float | None:
    """Mean standardised shift of the BatchNorm inputs on IMAGES [N, 3, H, W]; None for a model without BatchNorm."""
    recorder = MomentRecorder([backbone])  # the same hooks `predict --adapt` records with
    layers = recorder.layers[0]
    if not layers or not len(images):
        return None
    was_training = backbone.training
    try:
        backbone.eval()
        with recorder:
            for start in range(0, len(images), batch_size):
                backbone(images[start : start + batch_size])
    finally:
        backbone.train(was_training)
    shifts = [
        ((mean - layer.running_mean).abs() / (layer.running_var + layer.eps).sqrt()).mean().item()
        for layer, mean in zip(layers, recorder.moments()[0].means, strict=True)
    ]
    return float(sum(shifts) / len(shifts))
