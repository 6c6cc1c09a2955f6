"""The raw-pixel model: an image shrunk to a grey thumbnail, and a support vector machine on it.

An SVM (RBF kernel) on PIXELS x PIXELS grey levels is imagefit's classical baseline (training.baseline). When it
beats the fine-tuned network on val, the run keeps it as an ordinary run folder (training.fallback). To be one it
is a timm model, `imagefit_pixel_svm` (registered here, so timm builds it by name like any backbone): it computes
scikit-learn's one-against-one SVC decision (votes of the class pairs, ties broken by their summed confidences, as
`SVC.decision_function` gives it), and ImageClassifier's head on it is the identity (a class the SVM never saw
is held far below). So prediction, evaluation, export and serving read it like any run. It has no trainable
weights, only buffers: the input normalisation it undoes, the support vectors and their coefficients.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC
from timm.models import register_model
from torch import nn

PIXELS = 32  # side of the grey thumbnail (1,024 features)
SUPPORTS = 2000  # rows kept for support vectors: the baseline fits on at most this many images
GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's "L"
NAME = "imagefit_pixel_svm"
DATA_CONFIG = {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bicubic"}


class RawPixels(nn.Module):
    """Normalised images [N, 3, H, W] -> the SVM's scores of each class [N, C] (`thumbnail` gives its input)."""

    def __init__(self, mean: tuple[float, ...] = DATA_CONFIG["mean"], std: tuple[float, ...] = DATA_CONFIG["std"]):
        super().__init__()
        self.pretrained_cfg = {**DATA_CONFIG, "mean": tuple(mean), "std": tuple(std), "crop_pct": 1.0}
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("grey", torch.tensor(GREY).view(1, 3, 1, 1))
        self.register_buffer("supports", torch.zeros(SUPPORTS, PIXELS * PIXELS))
        self.register_buffer("gamma", torch.ones(()))
        self.set_classes(2)

    def set_classes(self, count: int) -> None:
        """Size the class buffers for COUNT classes (the factory calls it before the head is built):
        `members` [S, C] (each support vector's class), `coef` [S, C] (its dual coefficient in the pair with each
        other class), `offsets` [C, C] (class i's side of pair (i, j)'s intercept), `sides` [C, C] (+1 above the
        diagonal, where i is the pair's lower index, -1 below, 0 on it and for a pair with a class never fitted)."""
        self.num_features = count
        self.register_buffer("members", torch.zeros(SUPPORTS, count))
        self.register_buffer("coef", torch.zeros(SUPPORTS, count))
        self.register_buffer("offsets", torch.zeros(count, count))
        ones = torch.ones(count, count)
        self.register_buffer("sides", torch.triu(ones, 1) - torch.tril(ones, -1))

    def thumbnail(self, images: torch.Tensor) -> torch.Tensor:
        """Grey levels in [0, 1], box-averaged to PIXELS x PIXELS and flattened: [N, PIXELS * PIXELS]."""
        grey = ((images * self.input_std + self.input_mean) * self.grey).sum(dim=1)
        rows, columns = box_weights(grey.shape[-2], grey), box_weights(grey.shape[-1], grey)
        return (rows @ grey @ columns.transpose(0, 1)).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decide(self.thumbnail(images))

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        """Thumbnails [N, PIXELS * PIXELS] -> scores [N, C]: votes, plus the summed confidences squeezed below 1/3."""
        distance = (x * x).sum(1, keepdim=True) - 2 * x @ self.supports.T + (self.supports**2).sum(1)
        kernel = torch.exp(-self.gamma * distance.clamp_min(0))
        by_class = torch.einsum("ns,sc,st->nct", kernel, self.members, self.coef)  # class c's vectors, pair (c, t)
        view = (by_class + by_class.transpose(1, 2)) * self.sides + self.offsets  # i's side of pair (i, j)
        votes = ((view >= 0) & (self.sides > 0)) | ((view > 0) & (self.sides < 0))
        confidence = view.sum(2)
        return votes.to(x.dtype).sum(2) + confidence / (3 * (confidence.abs() + 1))


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
def imagefit_pixel_svm(pretrained: bool = False, **_) -> RawPixels:
    """timm's entry point (no pretrained weights exist; timm's other arguments do not apply)."""
    return RawPixels()


def svm_buffers(fitted: SVC, classes: list[str]) -> tuple[dict, list[int]]:
    """The buffers of RawPixels that compute FITTED's `decision_function` in the run's class order,
    and the indices of the classes it never saw (in no pair). RawPixels reads a pair's kernel sum as the decision
    for its lower run index: where the run orders the pair's classes the other way round, their coefficients turn
    sign. scikit-learn turns the sign of a two-class SVM's coefficients (the second class positive): turned back."""
    order = [classes.index(name) for name in fitted.classes_]
    dual, intercept = fitted.dual_coef_, fitted.intercept_
    if len(order) == 2:
        dual, intercept = -dual, -intercept
    owner = np.repeat(np.arange(len(order)), fitted.n_support_)  # each support vector's class, SVM order
    members, coef = np.zeros((SUPPORTS, len(classes))), np.zeros((SUPPORTS, len(classes)))
    for row, (own, vector) in enumerate(zip(owner, dual.T, strict=True)):
        members[row, order[own]] = 1.0
        for other in set(range(len(order))) - {own}:
            turned = order[min(own, other)] > order[max(own, other)]
            coef[row, order[other]] = (-1.0 if turned else 1.0) * vector[other if other < own else other - 1]
    offsets, sides = np.zeros((len(classes), len(classes))), np.zeros((len(classes), len(classes)))
    pairs = [(i, j) for i in range(len(order)) for j in range(i + 1, len(order))]  # scikit-learn's order
    for (i, j), value in zip(pairs, intercept, strict=True):
        first, second = order[i], order[j]
        offsets[first, second], offsets[second, first] = value, -value
        sides[min(first, second), max(first, second)], sides[max(first, second), min(first, second)] = 1.0, -1.0
    supports = np.zeros((SUPPORTS, PIXELS * PIXELS))
    supports[: len(owner)] = fitted.support_vectors_
    buffers = {"supports": supports, "gamma": fitted._gamma, "members": members, "coef": coef}
    return buffers | {"offsets": offsets, "sides": sides}, [c for c in range(len(classes)) if c not in order]


def fill_pixel_model(model: nn.Module, *, mean, std, buffers: dict, unseen: list[int]) -> nn.Module:
    """MODEL (an ImageClassifier around RawPixels) given the input normalisation (MEAN, STD: the preprocessing's)
    and the SVM's BUFFERS (`supports`, `gamma`, `members`, `coef`, `offsets`, `sides`: svm_buffers): its head
    passes the scores on, the UNSEEN classes (indices) held 30 below."""
    backbone = model.backbone
    with torch.no_grad():
        backbone.input_mean.copy_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        backbone.input_std.copy_(torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        for name, values in buffers.items():
            getattr(backbone, name).copy_(torch.as_tensor(values, dtype=torch.float32))
        count = backbone.num_features
        model.head[-1].weight.copy_(torch.eye(count))
        model.head[-1].bias.copy_(torch.tensor([-30.0 if c in unseen else 0.0 for c in range(count)]))
    return model.eval()
