"""How far each reference dataset is from ImageNet photos, by the BatchNorm shift of tf_efficientnet_lite0.

    python3 benchmarks/data_distance.py [--images 128] [--size 192]

Prints one row per dataset: the mean standardised shift of the BatchNorm inputs
(imagefit.training.distance.batchnorm_shift) on up to --images plain views of its images.
"""

from __future__ import annotations

import argparse
import random

import torch
from cifar_subset import write_subset
from screen import SETS

from imagefit.config import ModelRecipe
from imagefit.data import scan
from imagefit.data.decode import open_image
from imagefit.data.transforms import eval_transform
from imagefit.models import build_classifier
from imagefit.training.distance import batchnorm_shift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", type=int, default=192)
    args = parser.parse_args()
    model, preprocess, _ = build_classifier(ModelRecipe(image_size=args.size), 2)
    transform = eval_transform(preprocess)
    print("| data | images | BatchNorm shift |")
    print("|---|---|---|")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as scratch:
        for name, path in SETS.items():
            data = path or write_subset(Path(scratch) / "cifar.csv")
            samples = scan(data).samples
            chosen = random.Random(0).sample(samples, min(args.images, len(samples)))
            images = torch.stack([transform(open_image(s.path)) for s in chosen])
            print(f"| {name} | {len(chosen)} | {batchnorm_shift(model.backbone, images):.3f} |", flush=True)


if __name__ == "__main__":
    main()
