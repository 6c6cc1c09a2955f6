"""Grad-CAM heat maps (pytorch-grad-cam) for any timm CNN or ViT-style backbone, found automatically."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.preprocess import Preprocess, eval_crop, normalise
from imagefit.errors import UserError
from imagefit.files import free_path, output_folder
from imagefit.models.trained import load_trained
from imagefit.prediction.inputs import collect_inputs, image_id
from imagefit.runs import load_run


@dataclass
class Explanation:
    """One image's Grad-CAM: the overlay picture, the class it explains and the model's confidence in it."""

    path: str
    label: str
    confidence: float
    overlay: np.ndarray  # H x W x 3 uint8


def find_target_layer(backbone: nn.Module, size: int) -> tuple[nn.Module, object]:
    """The layer Grad-CAM should read, and the reshape it needs (None for CNNs).

    Token models (timm ViTs: `blocks` and `num_prefix_tokens`) use the last block's first norm,
    since the final block's patch tokens get no gradient through the class token. CNNs use the
    last module, in execution order, whose output is a feature map with more than one pixel.
    """
    if hasattr(backbone, "blocks") and hasattr(backbone, "num_prefix_tokens"):
        last = backbone.blocks[-1]
        norm = last.norm1 if hasattr(last, "norm1") else last.ln_1  # timm's blocks; open_clip's (--init clip)
        return norm, _TokenReshape(int(backbone.num_prefix_tokens))
    spatial: list[nn.Module] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, _inputs, output: (
                spatial.append(mod)
                if isinstance(output, torch.Tensor) and output.ndim == 4 and min(output.shape[-2:]) > 1
                else None
            )
        )
        for module in backbone.modules()
    ]
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    if not spatial:
        raise UserError(f"{type(backbone).__name__}: no feature map to explain (Grad-CAM needs a spatial layer)")
    return spatial[-1], None


class _TokenReshape:
    """[B, prefix + h*w, C] tokens to a [B, C, h, w] map, the prefix (class, register) tokens dropped."""

    def __init__(self, prefix: int):
        self.prefix = prefix

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, self.prefix :, :]
        side = int(math.isqrt(patches.shape[1]))
        return patches.reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)


def model_input(image: Image.Image, preprocess: Preprocess) -> tuple[torch.Tensor, np.ndarray]:
    """The normalised input tensor [1, 3, S, S] and the same crop as an RGB float image in [0, 1]."""
    crop = eval_crop(image, preprocess)
    tensor = torch.from_numpy(normalise(crop, preprocess)).unsqueeze(0)
    return tensor, np.asarray(crop, dtype=np.float32) / 255.0


def gradcam(
    model: nn.Module,
    preprocess: Preprocess,
    images: list[Image.Image],
    classes: list[str],
    targets: list[int | None] | None = None,
    *,
    temperature: float = 1.0,
) -> list[tuple[np.ndarray, int, float]]:
    """(overlay, explained class, its probability) per image; a target of None explains the predicted class.
    The probability is softmax(logits / temperature): with the run's temperature, the one `predict` gives."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = model.eval()
    layer, reshape = find_target_layer(model.backbone, preprocess.size)
    results = []
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        for index, image in enumerate(images):
            tensor, picture = model_input(image, preprocess)
            with torch.no_grad():
                probabilities = (model(tensor) / temperature).softmax(dim=1)[0]
            wanted = targets[index] if targets and targets[index] is not None else int(probabilities.argmax())
            mask = cam(input_tensor=tensor, targets=[ClassifierOutputTarget(wanted)])[0]
            overlay = show_cam_on_image(picture, mask, use_rgb=True, image_weight=0.55)
            results.append((overlay, wanted, float(probabilities[wanted])))
    return results


def explain(
    run_path: str | Path, images: list[str | Path], *, out_dir: str | Path | None = None, target: str | None = None
) -> list[Explanation]:
    """Grad-CAM overlays for IMAGES (files, folders, zips), saved as PNGs in OUT_DIR (default RUN/explain)."""
    run = load_run(Path(run_path))
    if target is not None and target not in run.classes:
        raise UserError(f"--target '{target}' is not a class of this model: {', '.join(run.classes)}")
    out = output_folder(Path(out_dir) if out_dir else run.files.explain)
    locators, pictures = [], []
    for locator in collect_inputs(list(images)):
        try:
            pictures.append(open_image(locator))
        except UNREADABLE:
            continue  # not an image: nothing to explain
        locators.append(locator)
    if not pictures:
        raise UserError(f"none of {', '.join(str(i) for i in images)} is a readable image")
    wanted = [run.classes.index(target) if target else None] * len(pictures)
    explanations = []
    for locator, (overlay, label_index, confidence) in zip(
        locators,
        gradcam(
            load_trained(run), run.preprocess, pictures, run.classes, wanted, temperature=run.inference.temperature
        ),
        strict=True,
    ):
        label = run.classes[label_index]
        Image.fromarray(overlay).save(free_path(out, f"{image_id(locator)}_{label}", ".png"))
        explanations.append(Explanation(locator, label, confidence, overlay))
    return explanations
