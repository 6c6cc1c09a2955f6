"""`imagefit zero-shot`: classify images by class names alone, with a CLIP model through open_clip.

Each class name becomes a handful of prompts ("a photo of a {name}."...), whose text embeddings
are averaged into the class's direction; an image's probabilities are the softmax of its
cosine similarity to each direction times CLIP's logit scale. Weights come from open_clip's
hub tags (users online) or a local checkpoint file; a machine with neither gets one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit.errors import UserError

TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
    "a bright photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)
DEFAULT_MODEL, DEFAULT_WEIGHTS = "ViT-B-32", "laion2b_s34b_b79k"


@dataclass
class ZeroShot:
    """A CLIP model ready to score images against class names: (model, preprocess, class directions)."""

    model: object
    preprocess: object
    classes: list[str]
    directions: object  # torch tensor [C, D], L2-normalised
    device: str = "cpu"

    def probabilities(self, images: list) -> np.ndarray:
        """[N, C] for PIL images."""
        import torch

        with torch.inference_mode():
            batch = torch.stack([self.preprocess(image) for image in images]).to(self.device)
            features = self.model.encode_image(batch)
            features = features / features.norm(dim=-1, keepdim=True)
            logits = self.model.logit_scale.exp() * features @ self.directions.T
            return logits.softmax(dim=-1).float().cpu().numpy()


def class_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(set(names)) < 2:
        raise UserError(f"--classes needs at least two different names, like 'cat,dog' (got {text!r})")
    return names


def load_zero_shot(
    classes: list[str], *, model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_WEIGHTS, device: str = "cpu"
) -> ZeroShot:
    """The CLIP model (`pretrained`: an open_clip tag, a checkpoint file, or None for random weights) and
    the class directions from the prompt templates."""
    import open_clip
    import torch

    if model not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
        raise UserError(f"unknown CLIP model '{model}'." + (f" Did you mean: {', '.join(close)}?" if close else ""))
    if pretrained and not Path(pretrained).exists():
        check_clip_reachable(model, pretrained)
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained or None, device=device)
    except (OSError, RuntimeError) as exc:
        raise UserError(offline_message(model, pretrained, type(exc).__name__)) from None
    with torch.inference_mode():
        directions = class_directions(clip, model, classes, device=device)
    return ZeroShot(clip.eval(), preprocess, classes, directions, device)


def class_directions(clip, model: str, classes: list[str], *, device: str = "cpu"):
    """[C, D] unit text directions of CLASSES: each the mean of its prompts' normalised text embeddings."""
    import open_clip
    import torch

    tokenizer = open_clip.get_tokenizer(model)
    directions = []
    for name in classes:
        text = clip.encode_text(tokenizer([t.format(name) for t in TEMPLATES]).to(device))
        text = text / text.norm(dim=-1, keepdim=True)
        mean = text.mean(dim=0)
        directions.append(mean / mean.norm())
    return torch.stack(directions)


def check_clip_reachable(model: str, pretrained: str) -> None:
    import os

    from imagefit.models.hub import hub_reachable

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or not hub_reachable():
        if not _cached(model, pretrained):
            raise UserError(offline_message(model, pretrained, "the hub cannot be reached"))


def _cached(model: str, pretrained: str) -> bool:
    import open_clip

    try:
        config = open_clip.get_pretrained_cfg(model, pretrained)
    except (KeyError, RuntimeError):
        return False
    repo = config.get("hf_hub", "").rstrip("/") if config else ""
    if not repo:
        return False
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "open_clip_pytorch_model.bin")
    return isinstance(found, str)


def offline_message(model: str, pretrained: str | None, why: str) -> str:
    return (
        f"could not load CLIP weights {model} / {pretrained} ({why}). Connect to the internet once (open_clip "
        "caches them), or pass --pretrained /path/to/open_clip_pytorch_model.bin"
    )
