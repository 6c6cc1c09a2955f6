"""Training and evaluation transforms (torchvision transforms v2) from the model's preprocessing config."""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode, v2

from imagefit.config import AugmentRecipe
from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.preprocess import WHOLE_PICTURE, Preprocess
from imagefit.data.sources import Sample

INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def _tensor_tail(preprocess: Preprocess) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(preprocess.mean, preprocess.std)]


def train_decode_size(preprocess: Preprocess, augment: AugmentRecipe) -> int:
    """Shorter side a training image needs before its random crop: the smallest crop still covers the output."""
    return int(preprocess.size / math.sqrt(max(augment.crop_scale, 0.05)))


def _resize(side: int, preprocess: Preprocess, interpolation: InterpolationMode):
    """Shorter side to SIDE ("crop"), the whole picture to SIDE x SIDE ("squash"), or the longer side to SIDE and
    the shorter padded with black to SIDE ("pad")."""
    if preprocess.resize == "pad":
        return v2.Compose(
            [v2.Resize(None, max_size=side, interpolation=interpolation, antialias=True), v2.CenterCrop(side)]
        )
    size = (side, side) if preprocess.resize == "squash" else side
    return v2.Resize(size, interpolation=interpolation, antialias=True)


def eval_transform(preprocess: Preprocess) -> v2.Compose:
    """Resize (the shorter side, or the whole picture when squashed), centre-crop, normalise (timm's eval)."""
    interpolation = INTERPOLATIONS.get(preprocess.interpolation, InterpolationMode.BICUBIC)
    return v2.Compose(
        [
            _resize(preprocess.resize_size, preprocess, interpolation),
            v2.CenterCrop(preprocess.size),
            *_tensor_tail(preprocess),
        ]
    )


def train_transform(preprocess: Preprocess, augment: AugmentRecipe) -> v2.Compose:
    """Random resized crop, flips, rotation, colour jitter and optional auto-augment, then normalise.

    Squashed (or padded) pictures are first resized whole to a square, so the random crop draws from every part of them.
    """
    interpolation = INTERPOLATIONS.get(preprocess.interpolation, InterpolationMode.BICUBIC)
    steps: list = []
    if preprocess.resize in WHOLE_PICTURE:
        steps.append(_resize(train_decode_size(preprocess, augment), preprocess, interpolation))
    steps += [
        v2.RandomResizedCrop(
            preprocess.size, scale=(augment.crop_scale, 1.0), interpolation=interpolation, antialias=True
        )
    ]
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.vflip:
        steps.append(v2.RandomVerticalFlip())
    if augment.rotate > 0:
        steps.append(v2.RandomRotation(augment.rotate, interpolation=InterpolationMode.BILINEAR))
    if augment.auto_augment == "trivial":
        steps.append(v2.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR))
    elif augment.auto_augment == "randaugment":
        steps.append(v2.RandAugment(interpolation=InterpolationMode.BILINEAR))
    if augment.color_jitter > 0:
        strength = augment.color_jitter
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    return v2.Compose(steps + _tensor_tail(preprocess))


def transformed(samples: list[Sample], transform, *, min_size: int) -> tuple[list[torch.Tensor], list[Sample]]:
    """TRANSFORM of each sample's image (decoded to at least MIN_SIZE), and the samples kept (unreadable: skipped)."""
    views, kept = [], []
    for sample in samples:
        try:
            views.append(transform(open_image(sample.path, min_size=min_size)))
        except UNREADABLE:
            continue
        kept.append(sample)
    return views, kept
