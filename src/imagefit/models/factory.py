"""Build the classifier: any timm backbone, pretrained weights from the best source, and a new head."""

from __future__ import annotations

import difflib

import timm
import torch
from torch import nn

import imagefit.models.pixels  # noqa: F401  (registers imagefit_pixel_svm with timm)
from imagefit.config import ModelRecipe
from imagefit.data.preprocess import WHOLE_PICTURE, Preprocess
from imagefit.errors import UserError
from imagefit.models.hub import offline_message
from imagefit.models.weights import load_offline_weights


class ImageClassifier(nn.Module):
    """A timm backbone that returns pooled features, and a head that maps them to class logits."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, hidden: tuple[int, ...] = (), dropout: float = 0.2):
        super().__init__()
        self.backbone = backbone
        self.head = build_head(backbone.num_features, num_classes, hidden=hidden, dropout=dropout)

    def forward(self, images):
        return self.head(self.backbone(images))


def build_head(in_features: int, num_classes: int, *, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Optional Linear-BN-ReLU-Dropout blocks, then dropout and the final linear layer."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = size
    layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


def check_model_name(name: str) -> None:
    """Raise UserError, with close names, when timm has no such model."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = (
        f" Did you mean: {', '.join(close)}?"
        if close
        else " List them with `python -c 'import timm; print(timm.list_models())'`."
    )
    raise UserError(f"unknown model '{name}'.{hint}")


def create_backbone(name: str, *, pretrained: bool) -> tuple[nn.Module, str]:
    """A timm backbone without classifier, and where its weights came from ('offline', 'timm-hub' or 'none')."""
    check_model_name(name)
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0), "none"
    backbone = timm.create_model(name, pretrained=False, num_classes=0)
    if load_offline_weights(backbone, name):
        return backbone, "offline"
    try:
        return timm.create_model(name, pretrained=True, num_classes=0), "timm-hub"
    except OSError as exc:
        raise UserError(offline_message(name, type(exc).__name__)) from exc


def build_classifier(
    recipe: ModelRecipe, num_classes: int, *, pretrained: bool | None = None, classes: list[str] | None = None
) -> tuple[ImageClassifier, Preprocess, str]:
    """The classifier, its preprocessing, and the weights' source; `pretrained` overrides the recipe's.

    With `init` clip the backbone is CLIP's image tower, and given `classes` the head starts as
    their zero-shot classifier (imagefit.models.clip).
    """
    use_pretrained = recipe.pretrained if pretrained is None else pretrained
    if recipe.init == "clip":
        from imagefit.models.clip import clip_tower

        if recipe.head:
            raise UserError("--init clip makes the head from the class names: drop the hidden --head layers")
        backbone, head_weights, source = clip_tower(recipe.clip_model, pretrained=use_pretrained, classes=classes)
    else:
        (backbone, source), head_weights = create_backbone(recipe.model, pretrained=use_pretrained), None
    if hasattr(backbone, "set_classes"):  # a backbone whose features are class scores (models.pixels)
        backbone.set_classes(num_classes)
    model = ImageClassifier(backbone, num_classes, hidden=recipe.head, dropout=recipe.dropout)
    if head_weights is not None:
        with torch.no_grad():
            model.head[-1].weight.copy_(head_weights)
            model.head[-1].bias.zero_()
    return model, preprocess_for(backbone, recipe.image_size, recipe.resize), source


def fixed_input_size(backbone: nn.Module) -> bool:
    """Whether BACKBONE takes one input size only (ViTs' position embeddings): no smaller or larger sizes."""
    return hasattr(backbone, "patch_embed") or bool(getattr(backbone, "fixed_input_size", False))


def native_image_size(name: str) -> int:
    """The input size a timm model was pretrained at (224 when its config names none)."""
    size = timm.get_pretrained_cfg_value(name, "input_size")
    return int(size[-1]) if size else 224


def preprocess_for(backbone: nn.Module, image_size: int = 0, resize: str = "crop") -> Preprocess:
    """The backbone's own preprocessing (timm's data config), at `image_size` when given; squashed and padded
    pictures are not cropped at evaluation (crop_pct 1.0)."""
    config = timm.data.resolve_model_data_config(backbone)
    size = image_size or int(config["input_size"][-1])
    return Preprocess(
        size=size,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config.get("interpolation", "bicubic"),
        crop_pct=1.0 if resize in WHOLE_PICTURE else float(config.get("crop_pct", 0.875)),
        resize=resize,
    )
