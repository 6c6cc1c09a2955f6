"""The two-phase learning-rate curve and the optimizer's parameter groups."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class PhaseSchedule:
    """Learning-rate factor per optimizer step for the two-phase recipe.

    Phase 1 (head only) decays from 1 to `finetune_ratio` on a cosine; phase 2 (whole network)
    warms up linearly to `finetune_ratio`, then decays on a cosine to `final_ratio` of that.
    """

    frozen_steps: int
    total_steps: int
    warmup_steps: int
    finetune_ratio: float
    final_ratio: float = 0.01

    def __call__(self, step: int) -> float:
        if step < self.frozen_steps:
            progress = step / max(1, self.frozen_steps)
            return self.finetune_ratio + (1 - self.finetune_ratio) * _cosine(progress)
        step -= self.frozen_steps
        if step < self.warmup_steps:
            return self.finetune_ratio * (step + 1) / (self.warmup_steps + 1)
        remaining = max(1, self.total_steps - self.frozen_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / remaining)
        return self.finetune_ratio * (self.final_ratio + (1 - self.final_ratio) * _cosine(progress))


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def weight_decay_groups(
    model: nn.Module, weight_decay: float, *, lr: float = 0.0, layer_decay: float = 1.0
) -> list[dict]:
    """Parameter groups: weights with decay; norms, biases and other 1-d parameters without.

    timm's `param_groups_weight_decay` applies the same rule but leaves out parameters that are
    frozen when it runs, and the backbone is frozen before the optimizer is built, so all
    parameters are grouped here: frozen ones have no gradient and the optimizer skips them.
    With `layer_decay` below 1 (and `lr`), each of the backbone's layers (timm's `group_matcher`,
    as `param_groups_layer_decay` groups them) gets its own groups at lr * layer_decay ** depth,
    depth counted down from the head (1.0): the first layers move least (BEiT, ELECTRA).
    """
    scales = _layer_scales(model, layer_decay) if layer_decay < 1.0 and lr > 0 else {}

    def group(no_decay: bool) -> dict:
        return {"params": [], "weight_decay": 0.0 if no_decay else weight_decay}

    # keyed by (lr scale, no decay); without layer decay, the two groups at scale 1, decay first
    groups = {(1.0, False): group(False), (1.0, True): group(True)}
    for name, param in model.named_parameters():
        no_decay = param.ndim <= 1 or name.endswith(".bias")
        groups.setdefault((scales.get(name, 1.0), no_decay), group(no_decay))["params"].append(param)
    if scales:
        for (scale, _), entry in groups.items():
            entry["lr"] = lr * scale
    return list(groups.values())


def _layer_scales(model: nn.Module, layer_decay: float) -> dict[str, float]:
    """Learning-rate scale by parameter name: the head 1, the backbone's last layer layer_decay, and down."""
    from timm.models import group_parameters

    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(backbone, "group_matcher"):
        return {}
    layers = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    top = max(layers.values()) + 1  # the head's depth
    return {f"backbone.{name}": layer_decay ** (top - layer) for name, layer in layers.items()}


def early_layers(backbone: nn.Module, share: float) -> list[str]:
    """Names of BACKBONE's parameters in its first whole layers holding at most SHARE of its parameters.

    Layers as timm's `group_matcher` splits the network (the stem first); none when SHARE is 0 or the
    backbone has no matcher. The early layers see the largest images, so on a CPU they cost most of
    the backward pass while holding few of the weights.
    """
    from timm.models import group_parameters

    if share <= 0 or not hasattr(backbone, "group_matcher"):
        return []
    layer_of = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    sizes = {name: parameter.numel() for name, parameter in backbone.named_parameters()}
    by_layer: dict[int, list[str]] = {}
    for name, layer in layer_of.items():
        by_layer.setdefault(layer, []).append(name)
    allowed, counted, names = share * sum(sizes.values()), 0, []
    for layer in sorted(by_layer):
        counted += sum(sizes[name] for name in by_layer[layer])
        if counted > allowed:
            break
        names += by_layer[layer]
    return names


def freeze_early_layers(backbone: nn.Module, share: float) -> None:
    """Stop gradients to BACKBONE's early layers (`early_layers`)."""
    parameters = dict(backbone.named_parameters())
    for name in early_layers(backbone, share):
        parameters[name].requires_grad_(False)


def train_as_fine_tuning(model: nn.Module, keep_frozen: float) -> None:
    """The parameters fine-tuning trains: all of MODEL's but its backbone's early layers (KEEP_FROZEN)."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    freeze_early_layers(model.backbone, keep_frozen)


def progressive_sizes(size: int, share: float, *, first: int, end: int) -> Callable[[int], int]:
    """Progressive resizing: the training image size of each Lightning epoch, fine-tuning in epochs first..end-1.

    The first half of the fine-tuning epochs (rounded down) train at SHARE of SIZE, rounded to a multiple of
    16 pixels (at least 32); the rest, and any head epochs before them, at SIZE.
    """
    small = max(32, int(round(size * share / 16)) * 16)
    switch = first + (end - first) // 2
    return lambda epoch: small if first <= epoch < switch else size
