"""BatchNorm input moments: recorded by forward pre-hooks, and each layer's statistics set from them so that new
images' inputs normalise as the training images' did (the formula in `imagefit.prediction.adapt`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

PRIOR_IMAGES = 32  # the training moments count as this many of the predicted images


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers that carry running statistics, from the input on."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]


@dataclass
class Moments:
    """Per-channel means and variances of each BatchNorm layer's input, over `images` images."""

    means: list[torch.Tensor]
    variances: list[torch.Tensor]
    images: int

    def to_tensors(self, size: int) -> dict[str, torch.Tensor]:
        tensors = {f"mean.{i}": m for i, m in enumerate(self.means)}
        tensors.update({f"var.{i}": v for i, v in enumerate(self.variances)})
        tensors["facts"] = torch.tensor([self.images, size], dtype=torch.int64)
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> tuple[Moments, int]:
        """The moments and the input size they were measured at."""
        count = sum(1 for key in tensors if key.startswith("mean."))
        images, size = (int(x) for x in tensors["facts"])
        moments = cls([tensors[f"mean.{i}"] for i in range(count)], [tensors[f"var.{i}"] for i in range(count)], images)
        return moments, size


class _Sums:
    """Running per-channel sums of one layer's inputs."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.squares: torch.Tensor | float = 0.0
        self.values = 0
        self.images = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double().transpose(0, 1).flatten(1)
        self.total = self.total + x.sum(dim=1)
        self.squares = self.squares + (x * x).sum(dim=1)
        self.values += x.shape[1]

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / max(1, self.values)
        return mean, (self.squares / max(1, self.values) - mean * mean).clamp_min(0.0)


class MomentRecorder:
    """Forward pre-hooks on the first DEPTHS[m] BatchNorm layers of each of MODELS (None: all of them) that record
    their inputs' moments (a context manager); the other layers carry no hook and cost nothing.

    With `reference` (one Moments per model), each hooked layer's statistics are also adapted before it runs.
    """

    def __init__(
        self,
        models: list[nn.Module],
        reference: list[Moments] | None = None,
        depths: list[int] | None = None,
    ) -> None:
        depths = depths or [None] * len(models)
        self.layers = [batchnorm_layers(model)[:depth] for model, depth in zip(models, depths, strict=True)]
        self.sums = [[_Sums() for _ in layers] for layers in self.layers]
        self.reference = reference
        self.original = [[(b.running_mean.clone(), b.running_var.clone()) for b in layers] for layers in self.layers]
        self.hooks: list = []

    def __enter__(self) -> MomentRecorder:
        for m, layers in enumerate(self.layers):
            for k, layer in enumerate(layers):
                self.hooks.append(layer.register_forward_pre_hook(self._hook(m, k)))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []

    def _hook(self, m: int, k: int):
        def record(layer: _BatchNorm, inputs) -> None:
            sums = self.sums[m][k]
            sums.add(inputs[0])
            if k == 0:
                sums.images += inputs[0].shape[0]
            if self.reference is not None:
                images = self.sums[m][0].images
                _adapt_layer(layer, self.original[m][k], self.reference[m], k, sums.moments(), images)

        return record

    def moments(self) -> list[Moments]:
        """What was recorded, per model."""
        found = []
        for sums in self.sums:
            pairs = [s.moments() for s in sums]
            found.append(
                Moments([m.float() for m, _ in pairs], [v.float() for _, v in pairs], sums[0].images if sums else 0)
            )
        return found


def _adapt_layer(layer: _BatchNorm, original, reference: Moments, k: int, seen, images: int) -> None:
    """Set LAYER's statistics so the predicted images' inputs normalise like the training images' did."""
    mu, var = original
    sigma = (var.double() + layer.eps).sqrt()
    ref_mean, ref_var = reference.means[k].double(), reference.variances[k].double()
    mean_t, var_t = seen
    weight = PRIOR_IMAGES / (PRIOR_IMAGES + images)  # Schneider et al.'s prior: the training moments' share
    mean = weight * ref_mean + (1 - weight) * mean_t
    second = weight * (ref_var + ref_mean**2) + (1 - weight) * (var_t + mean_t**2)
    var_t = (second - mean * mean).clamp_min(0.0)
    sigma_new = sigma * ((var_t + layer.eps) / (ref_var + layer.eps)).sqrt()
    mu_new = mean - sigma_new * (ref_mean - mu.double()) / sigma
    layer.running_mean.copy_(mu_new.to(layer.running_mean.dtype))
    layer.running_var.copy_((sigma_new**2 - layer.eps).clamp_min(0.0).to(layer.running_var.dtype))


def shift_from(reference: Moments, seen: Moments) -> float:
    """Mean over the layers SEEN covers (the first ones of REFERENCE) and their channels of |m_t - m_s| / sqrt(v_s):
    how far the images are from the training ones where they enter the network."""
    count = len(seen.means)
    pairs = zip(reference.means[:count], reference.variances[:count], seen.means, strict=True)
    shifts = [((m_t - m_s).abs() / (v_s + 1e-5).sqrt()).mean().item() for m_s, v_s, m_t in pairs]
    return float(np.mean(shifts)) if shifts else 0.0
