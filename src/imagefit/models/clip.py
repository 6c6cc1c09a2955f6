"""`--init clip`: CLIP's image tower (open_clip) as the backbone, and a head that starts as the zero-shot classifier.

The tower returns L2-normalised image embeddings; the head's weights start as CLIP's logit scale
times each class's text direction (the prompts of `imagefit.models.zeroshot`) and its bias at zero, so
before any training the classifier gives CLIP's zero-shot probabilities, and both phases go on
from there (the zero-shot head as the initialisation of fine-tuning, as in WiSE-FT and FLYP).
`clip_model` names the open_clip model and its weights: `ViT-B-32/laion2b_s34b_b79k`, or a
checkpoint file after the slash.
"""

from __future__ import annotations

import torch
from torch import nn

from imagefit.errors import UserError


class ClipTower(nn.Module):
    """An open_clip image tower that returns unit-length embeddings; timm-style facts for the rest of imagefit."""

    fixed_input_size = True  # position embeddings for one input size

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__()
        self.visual = visual
        self.num_features = embed_dim
        size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
        mean = tuple(getattr(visual, "image_mean", None) or OPENAI_MEAN)
        std = tuple(getattr(visual, "image_std", None) or OPENAI_STD)
        # What timm's resolve_model_data_config reads: open_clip resizes the shorter side and crops the centre.
        self.pretrained_cfg = {
            "input_size": (3, size, size),
            "mean": mean,
            "std": std,
            "interpolation": "bicubic",
            "crop_pct": 1.0,
        }

    @property
    def blocks(self):  # the transformer blocks, for Grad-CAM (imagefit.prediction.gradcam)
        return self.visual.transformer.resblocks

    num_prefix_tokens = 1  # the class token

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.visual(images)
        return features / features.norm(dim=-1, keepdim=True)


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def split_spec(spec: str) -> tuple[str, str | None]:
    """'ViT-B-32/laion2b_s34b_b79k' -> ('ViT-B-32', 'laion2b_s34b_b79k'); no slash: no weights named."""
    name, _, weights = spec.partition("/")
    return name, weights or None


def check_clip_model(spec: str) -> None:
    """UserError with close names when open_clip has no such model."""
    import difflib

    import open_clip

    name, _ = split_spec(spec)
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See open_clip.list_models()."
        raise UserError(f"unknown CLIP model '{name}' in --clip-model {spec}.{hint}")


def load_clip(spec: str, *, pretrained: bool) -> nn.Module:
    """The whole open_clip model (image and text towers) of SPEC; random weights unless `pretrained`."""
    import open_clip

    from imagefit.models.zeroshot import offline_message

    check_clip_model(spec)
    name, weights = split_spec(spec)
    try:
        model = open_clip.create_model(name, pretrained=weights if pretrained else None)
    except (OSError, RuntimeError) as exc:
        raise UserError(offline_message(name, weights, type(exc).__name__)) from None
    return model.eval()


def clip_tower(
    spec: str, *, pretrained: bool, classes: list[str] | None = None
) -> tuple[ClipTower, torch.Tensor | None, str]:
    """The image tower of SPEC, the zero-shot head weights of CLASSES (logit scale times their text
    directions, from the same model) when given, and where the weights came from ('clip' or 'none')."""
    from imagefit.models.zeroshot import class_directions

    model = load_clip(spec, pretrained=pretrained)
    tower = ClipTower(model.visual, int(model.visual.output_dim))
    weights = None
    if classes:
        with torch.no_grad():
            weights = model.logit_scale.exp() * class_directions(model, split_spec(spec)[0], classes)
    return tower, weights, "clip" if pretrained else "none"
