"""A model's preprocessing facts, and the evaluation preprocessing in NumPy (no torch needed).

`eval_array` gives exactly what the torchvision eval transform gives (PIL resize of the shorter
side, centre crop, scale to [0, 1], normalise), so ONNX Runtime and PyTorch see the same input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PIL_INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
WHOLE_PICTURE = ("squash", "pad")  # resize modes that keep every edge: no crop at evaluation (crop_pct 1.0)


@dataclass(frozen=True)
class Preprocess:
    """What a model expects: square input size, normalisation, interpolation and eval crop share.

    `resize` says how a picture becomes a square: "crop" resizes its shorter side and keeps the centre
    (timm's eval transform); "squash" resizes the whole picture to a square, changing its aspect ratio and
    keeping every edge (fastai's ResizeMethod.Squash), with `crop_pct` 1.0; "pad" resizes its longer side and pads
    the shorter one with black to a square, keeping the aspect ratio and every edge (fastai's ResizeMethod.Pad with
    zeros, Ultralytics' letterbox), with `crop_pct` 1.0.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    resize: str = "crop"

    @property
    def resize_size(self) -> int:
        """Shorter side before the centre crop at evaluation."""
        return int(round(self.size / self.crop_pct))

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "resize": self.resize,
        }

    @classmethod
    def from_dict(cls, values: dict) -> Preprocess:
        return cls(
            size=int(values["size"]),
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            interpolation=values.get("interpolation", "bicubic"),
            crop_pct=float(values.get("crop_pct", 0.875)),
            resize=values.get("resize", "crop"),
        )


def resize_shorter(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the shorter side is `size`, as torchvision's Resize(int) computes it."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize(new_size, PIL_INTERPOLATIONS.get(interpolation, Image.BICUBIC))


def resize_longer(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the longer side is `size`, as torchvision's Resize(None, max_size=size) computes it."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = int(size * short / long), size
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize(new_size, PIL_INTERPOLATIONS.get(interpolation, Image.BICUBIC))


def pad_square(image: Image.Image, size: int) -> Image.Image:
    """IMAGE (no side over SIZE) centred on a black SIZE x SIZE square, where torchvision's CenterCrop pads it."""
    width, height = image.size
    square = Image.new(image.mode, (size, size))
    square.paste(image, ((size - width) // 2, (size - height) // 2))
    return square


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size x size square, as torchvision's CenterCrop picks it."""
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def normalise(image: Image.Image, preprocess: Preprocess) -> np.ndarray:
    """A float32 CHW array scaled to [0, 1] and normalised with the model's mean and std."""
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(preprocess.mean, dtype=np.float32)) / np.asarray(preprocess.std, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def eval_crop(image: Image.Image, preprocess: Preprocess, *, resize: int = 0) -> Image.Image:
    """The picture the model sees at evaluation; `resize` overrides the shorter side before the crop."""
    side = resize or preprocess.resize_size
    if preprocess.resize == "squash":
        resized = image.resize((side, side), PIL_INTERPOLATIONS.get(preprocess.interpolation, Image.BICUBIC))
    elif preprocess.resize == "pad":
        resized = pad_square(resize_longer(image, side, preprocess.interpolation), side)
    else:
        resized = resize_shorter(image, side, preprocess.interpolation)
    return center_crop(resized, preprocess.size)


def eval_array(image: Image.Image, preprocess: Preprocess, *, resize: int = 0) -> np.ndarray:
    """The evaluation input for one RGB image; `resize` overrides the shorter side before the crop."""
    return normalise(eval_crop(image, preprocess, resize=resize), preprocess)
