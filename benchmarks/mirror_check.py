"""Would a mirror check tell when horizontal flips change the label (digits), before training? Measured: no.

    python3 benchmarks/mirror_check.py --sets digits,tiles,steel,hymenoptera --json results/issue28-mirror-check.json

Random flips are a photo default; a mirrored 2 is no digit (BiT's rule: no flips where they change the label).
Two checks a far-data adapt step could afford, each a logistic regression fitted on training images and scored
on val images as they are and mirrored (paired, noise = 2 standard errors of the per-image difference; "flips
off" when the mirrors' accuracy falls by more than 0.05 and the noise):
- `features`: on the frozen backbone's pooled features (tf_efficientnet_lite1 at 192 px, 256 training images);
- `pixels`: on the 32x32 grey thumbnails of training.baseline (its 2,000-image fit), the thumbnails mirrored.
Per set: its split as `imagefit train` carves it (seed 42; steel with a 20 % test split), squashed for the far
sets as adapt does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar_subset import write_subset  # noqa: E402
from screen import SETS  # noqa: E402

from imagefit.config import ModelRecipe  # noqa: E402
from imagefit.data import find_samples  # noqa: E402
from imagefit.data.preprocess import Preprocess  # noqa: E402
from imagefit.data.sources import Sample  # noqa: E402
from imagefit.data.split import assign_splits  # noqa: E402
from imagefit.data.transforms import eval_transform, transformed  # noqa: E402
from imagefit.models import build_classifier  # noqa: E402
from imagefit.training.baseline import fit_pixels, pixel_rows  # noqa: E402

FAR = {"digits", "cifar", "steel", "tiles"}  # adapt's BatchNorm shift says far (benchmarks/RESULTS.md, stop 38)

MOST_TRAIN, MOST_VAL = 256, 256
MIN_DROP = 0.05  # accuracy lost on the mirrors below which flips stay
NOISE_SE = 2.0


@dataclass(frozen=True)
class MirrorCheck:
    original: float  # val accuracy of the regression on frozen features
    mirrored: float  # the same on the val images mirrored
    noise: float  # NOISE_SE standard errors of the paired difference
    count: int

    @property
    def changes_labels(self) -> bool:
        drop = self.original - self.mirrored
        return drop > MIN_DROP and drop > self.noise

    def line(self) -> str:
        verdict = "mirrors change what the images show: no flips" if self.changes_labels else "flips kept"
        return (
            f"mirror check: val accuracy {self.original:.2f} on the images, {self.mirrored:.2f} on their mirrors "
            f"({self.count} images, noise {self.noise:.2f}): {verdict}"
        )


def judge(original: np.ndarray, mirrored: np.ndarray) -> MirrorCheck:
    """The check from each val image's correctness as it is and mirrored (booleans, paired)."""
    original, mirrored = np.asarray(original, dtype=float), np.asarray(mirrored, dtype=float)
    difference = original - mirrored
    noise = NOISE_SE * difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return MirrorCheck(float(original.mean()), float(mirrored.mean()), float(noise), len(difference))


def mirror_check(
    backbone: torch.nn.Module, train: list[Sample], val: list[Sample], preprocess: Preprocess, *, seed: int = 0
) -> MirrorCheck | None:
    """Frozen features of a seeded sample of TRAIN and VAL (and VAL mirrored), a regression fitted on the first,
    scored on the other two; None with under two classes in the sample."""
    rng = np.random.default_rng(seed)
    train = [train[i] for i in sorted(rng.permutation(len(train))[:MOST_TRAIN])]
    val = [val[i] for i in sorted(rng.permutation(len(val))[:MOST_VAL])]
    x_train, train_kept = _features(backbone, train, preprocess)
    x_val, val_kept = _features(backbone, val, preprocess)
    x_mirror, _ = _features(backbone, val_kept, preprocess, mirror=True)
    labels = [s.label for s in train_kept]
    if len(set(labels)) < 2 or not val_kept:
        return None
    scaler = StandardScaler().fit(x_train)
    regression = LogisticRegression(max_iter=1000, C=0.1).fit(scaler.transform(x_train), labels)
    truth = np.array([s.label for s in val_kept])
    right = regression.predict(scaler.transform(x_val)) == truth
    right_mirrored = regression.predict(scaler.transform(x_mirror)) == truth
    return judge(right, right_mirrored)


def _features(backbone, samples: list[Sample], preprocess: Preprocess, *, mirror: bool = False):
    views, kept = transformed(samples, eval_transform(preprocess), min_size=preprocess.resize_size)
    if not views:
        return np.zeros((0, 1)), kept
    images = torch.stack(views)
    if mirror:
        images = images.flip(-1)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode():
            rows = [backbone(images[i : i + 32]).float() for i in range(0, len(images), 32)]
    finally:
        backbone.train(was_training)
    return torch.cat(rows).numpy(), kept


def pixel_check(train: list[Sample], val: list[Sample], preprocess: Preprocess, *, seed: int = 0) -> MirrorCheck:
    fitted = fit_pixels(train, preprocess, seed=seed)
    rows, labels = pixel_rows(val, preprocess)
    mirrored = rows.reshape(len(rows), 32, 32)[:, :, ::-1].reshape(len(rows), -1)
    truth = np.array(labels)
    return judge(fitted.predict(rows) == truth, fitted.predict(mirrored) == truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sets.split(","):
            data = SETS[name] or write_subset(Path(scratch) / "cifar.csv")
            resize = "squash" if name in FAR else "crop"
            model, preprocess, _ = build_classifier(ModelRecipe(image_size=192, resize=resize), 2)
            samples = assign_splits(find_samples(data).samples, val_split=0.15, test_split=0.2 * (name == "steel"),
                                    seed=42)  # fmt: skip
            train, val = [s for s in samples if s.split == "train"], [s for s in samples if s.split == "val"]
            for kind in ("features", "pixels"):
                started = time.perf_counter()
                check = (mirror_check(model.backbone, train, val, preprocess, seed=42) if kind == "features"
                         else pixel_check(train, val, preprocess, seed=42))  # fmt: skip
                seconds = time.perf_counter() - started
                results[f"{name} {kind}"] = {**check.__dict__, "changes_labels": check.changes_labels,
                                             "seconds": round(seconds, 1)}  # fmt: skip
                print(f"| {name} | {kind} | {check.line()} | {seconds:.0f} s |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
