"""The raw-pixel model: an image shrunk to a grey thumbnail, standardised, and a linear layer on it.

A logistic regression on PIXELS x PIXELS grey levels is imagefit's trivial baseline (training.baseline). When it
beats the fine-tuned network on val, the run keeps it as an ordinary run folder (training.fallback). To be one it
is a timm model, `imagefit_raw_pixels` (registered here, so timm builds it by name like any backbone): its
"features" are the standardised thumbnail and ImageClassifier's head is the regression's linear layer. So
prediction, evaluation, export and serving read it like any run. It has no trainable weights, only buffers: the
input normalisation it undoes and the standardisation fitted on the training images.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

PIXELS = 32  # side of the grey thumbnail (1,024 features)
GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's "L"
NAME = "imagefit_raw_pixels"
DATA_CONFIG = {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bicubic"}


class RawPixels(nn.Module):
    """Normalised images [N, 3, H, W] -> standardised grey thumbnails [N, PIXELS * PIXELS]."""

    def __init__(self, mean: tuple[float, ...] = DATA_CONFIG["mean"], std: tuple[float, ...] = DATA_CONFIG["std"]):
        super().__init__()
        self.num_features = PIXELS * PIXELS
        self.pretrained_cfg = {**DATA_CONFIG, "mean": tuple(mean), "std": tuple(std), "crop_pct": 1.0}
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("grey", torch.tensor(GREY).view(1, 3, 1, 1))
        self.register_buffer("centre", torch.zeros(self.num_features))
        self.register_buffer("scale", torch.ones(self.num_features))

    def thumbnail(self, images: torch.Tensor) -> torch.Tensor:
        """Grey levels in [0, 1], box-averaged to PIXELS x PIXELS and flattened: [N, PIXELS * PIXELS]."""
        grey = ((images * self.input_std + self.input_mean) * self.grey).sum(dim=1)
        rows, columns = box_weights(grey.shape[-2], grey), box_weights(grey.shape[-1], grey)
        return (rows @ grey @ columns.transpose(0, 1)).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.thumbnail(images) - self.centre) / self.scale


def box_weights(size, like: torch.Tensor) -> torch.Tensor:
    """[PIXELS, SIZE]: row i averages the inputs adaptive average pooling gives output i (floor(i * SIZE / PIXELS)
    to ceil((i + 1) * SIZE / PIXELS)). As a product it exports to ONNX at any size, where the pooling operator
    exports only at multiples of PIXELS."""
    out = torch.arange(PIXELS, device=like.device)[:, None]
    start, end = (out * size) // PIXELS, ((out + 1) * size + PIXELS - 1) // PIXELS
    inputs = torch.arange(size, device=like.device)[None, :]
    inside = ((inputs >= start) & (inputs < end)).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


@register_model
def imagefit_raw_pixels(pretrained: bool = False, **_) -> RawPixels:
    """timm's entry point (no pretrained weights exist; timm's other arguments do not apply)."""
    return RawPixels()


def fill_pixel_model(model: nn.Module, *, mean, std, centre, scale, weight, bias) -> nn.Module:
    """MODEL (an ImageClassifier around RawPixels) given the input normalisation (MEAN, STD: the preprocessing's),
    the standardisation fitted on training thumbnails and the linear layer on them ([C, F], [C])."""
    with torch.no_grad():
        model.backbone.input_mean.copy_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        model.backbone.input_std.copy_(torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        model.backbone.centre.copy_(torch.as_tensor(centre, dtype=torch.float32))
        model.backbone.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        model.head[-1].weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        model.head[-1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return model.eval()
