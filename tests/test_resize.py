"""How a picture becomes a square: the centre crop (timm's eval), the whole picture squashed (--resize squash) or
padded (--resize pad)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imagefit.config import AugmentRecipe, Recipe
from imagefit.data.preprocess import Preprocess, eval_array
from imagefit.data.transforms import eval_transform, train_transform
from imagefit.errors import UserError
from imagefit.models.factory import build_classifier

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _edge_striped(width: int = 120, height: int = 40, stripe: int = 10) -> Image.Image:
    """A wide blue picture whose leftmost STRIPE columns are red: a detail a centre crop cuts away."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :, 2] = 255
    pixels[:, :stripe] = (255, 0, 0)
    return Image.fromarray(pixels)


def _red_at_left(array: np.ndarray) -> bool:
    """Whether the first column of a normalised [3, H, W] input is red."""
    red, blue = array[0, :, 0].mean() * STD[0] + MEAN[0], array[2, :, 0].mean() * STD[2] + MEAN[2]
    return bool(red > 0.5 > blue)


@pytest.mark.parametrize("resize", ["crop", "squash", "pad"])
@pytest.mark.parametrize(("width", "height"), [(120, 40), (41, 97), (48, 48)])
def test_numpy_and_torchvision_evaluation_agree_in_every_mode(resize, width, height):
    preprocess = Preprocess(48, MEAN, STD, crop_pct=0.875 if resize == "crop" else 1.0, resize=resize)
    image = _edge_striped(width, height)
    expected = eval_transform(preprocess)(image).numpy()
    assert np.allclose(eval_array(image, preprocess), expected, atol=1e-5)


def test_pad_keeps_the_aspect_ratio_and_every_edge_on_black():
    padded = eval_array(_edge_striped(120, 40), Preprocess(48, MEAN, STD, crop_pct=1.0, resize="pad"))
    pixels = padded.transpose(1, 2, 0) * np.array(STD) + np.array(MEAN)  # back to [0, 1]
    rows = np.flatnonzero(pixels.max(axis=(1, 2)) > 0.1)  # rows with picture in them
    assert len(rows) == 16 and rows[0] == 16, "120 x 40 at 48 wide is 16 high, centred"  # 48 * 40 / 120
    assert np.allclose(pixels[:16], 0, atol=1e-6) and np.allclose(pixels[32:], 0, atol=1e-6)
    assert _red_at_left(padded[:, 16:32])


def test_squash_keeps_the_edges_a_centre_crop_cuts():
    image = _edge_striped()
    squashed = Preprocess(32, MEAN, STD, crop_pct=1.0, resize="squash")
    cropped = Preprocess(32, MEAN, STD, crop_pct=1.0, resize="crop")
    assert _red_at_left(eval_array(image, squashed))
    assert not _red_at_left(eval_array(image, cropped))
    assert eval_array(image, squashed).shape == eval_array(image, cropped).shape == (3, 32, 32)


def test_squashed_training_views_draw_from_the_whole_picture():
    plain = AugmentRecipe(crop_scale=1.0, hflip=False, color_jitter=0.0)
    torch.manual_seed(0)
    squashed = train_transform(Preprocess(32, MEAN, STD, crop_pct=1.0, resize="squash"), plain)(_edge_striped())
    cropped = train_transform(Preprocess(32, MEAN, STD, resize="crop"), plain)(_edge_striped())
    assert tuple(squashed.shape) == tuple(cropped.shape) == (3, 32, 32)
    assert _red_at_left(squashed.numpy()) and not _red_at_left(cropped.numpy())


def test_the_recipe_gives_the_model_its_resize_mode_and_refuses_others():
    recipe = Recipe().override(**{"model.resize": "squash", "model.pretrained": False, "model.image_size": 32})
    _, preprocess, _ = build_classifier(recipe.model, 2)
    assert (preprocess.resize, preprocess.crop_pct, preprocess.size) == ("squash", 1.0, 32)
    assert Preprocess.from_dict(preprocess.to_dict()) == preprocess
    assert Preprocess.from_dict({k: v for k, v in preprocess.to_dict().items() if k != "resize"}).resize == "crop"
    with pytest.raises(UserError, match="resize"):
        Recipe().override(**{"model.resize": "stretch"})


def test_a_square_picture_is_the_same_squashed_or_padded_in_training_and_evaluation():
    image = _edge_striped(60, 60)
    squashed = Preprocess(32, MEAN, STD, crop_pct=1.0, resize="squash")
    padded = Preprocess(32, MEAN, STD, crop_pct=1.0, resize="pad")
    assert np.array_equal(eval_array(image, squashed), eval_array(image, padded))
    augment = AugmentRecipe(crop_scale=0.5)
    torch.manual_seed(3)
    first = train_transform(squashed, augment)(image)
    torch.manual_seed(3)
    assert torch.equal(first, train_transform(padded, augment)(image))
