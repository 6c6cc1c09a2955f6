"""How fast a model trains and predicts, and how fast images decode, measured on the machine: what
`--time-limit` plans with."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from imagefit.data.decode import open_image
from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample
from imagefit.data.transforms import eval_transform, train_decode_size, train_transform
from imagefit.models import ImageClassifier
from imagefit.training.callbacks import keep_batchnorm_statistics
from imagefit.training.schedule import train_as_fine_tuning


@dataclass
class Rates:
    train: float  # model images/s, forward and backward
    infer: float  # model images/s, forward only
    prep_train: float = 0.0  # seconds to decode and augment one training image, one core
    prep_eval: float = 0.0  # seconds to decode and resize one evaluation image, one core
    overlapped: bool = False  # a GPU: loader workers run beside the model instead of taking its cores
    workers: int = 1

    def seconds(self, count: float, prep: float, model_rate: float) -> float:
        """Wall seconds for `count` images: on a CPU decode and model share the cores, on a GPU they overlap."""
        if self.overlapped:
            return count * max(prep / max(1, self.workers), 1 / model_rate)
        return count * (prep + 1 / model_rate)

    def evaluation(self, count: float) -> float:
        """Wall seconds to decode, resize and predict `count` images (one plain view)."""
        return self.seconds(count, self.prep_eval, self.infer)


def measure_rates(
    model: ImageClassifier,
    size: int,
    batch_size: int,
    *,
    channels_last: bool,
    device: str,
    frozen_bn: bool = False,
    keep_frozen: float = 0.0,
) -> Rates:
    """Images/s of one training step and of inference on random input; the model's weights are left as found.

    `frozen_bn` times the step as fine-tuning runs it when BatchNorm statistics are kept: BatchNorm in
    eval mode, about 1.4x faster on a CPU than in training mode (benchmarks/micro_batch.py against
    model_throughput.py), which a probe in training mode took for the fine-tuning speed. `keep_frozen`
    leaves the backbone's early layers out of the backward pass, as fine-tuning will (`early_layers`).
    """
    state = copy.deepcopy(model.state_dict())  # training-mode steps move BatchNorm statistics
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    images = torch.randn(batch_size, 3, size, size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def train_step():
        model.train()
        if frozen_bn:
            keep_batchnorm_statistics(model)
        model(images).sum().backward()

    def infer_step():
        model.eval()
        with torch.no_grad():
            model(images)

    with _trainable_as_fine_tuning(model, keep_frozen):
        rates = Rates(train=_rate(train_step, batch_size, device), infer=_rate(infer_step, batch_size, device))
    model.zero_grad(set_to_none=True)
    model.load_state_dict(state)
    return rates


def _rate(step: Callable[[], None], batch_size: int, device: str, repeats: int = 3) -> float:
    """Images/s of STEP's fastest run after two warm-up runs (allocation, kernel choice: up to 2x slow); the
    fastest, since other work on the machine only ever slows a step down."""
    for _ in range(2):
        step()
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        fastest = min(fastest, time.perf_counter() - started)
    return batch_size / fastest


@contextmanager
def _trainable_as_fine_tuning(model: ImageClassifier, keep_frozen: float):
    """MODEL's parameters trainable as fine-tuning has them (all but the early layers of KEEP_FROZEN), then as found."""
    trainable = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    train_as_fine_tuning(model, keep_frozen)
    try:
        yield
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(trainable[name])


def measure_prep(samples: list[Sample], preprocess: Preprocess, augment, *, count: int = 12) -> tuple[float, float]:
    """Seconds per image to decode and augment (training) and to decode and resize (evaluation), one core."""
    chosen = samples[:: max(1, len(samples) // count)][:count]
    if not chosen:
        return 0.0, 0.0
    timings = []
    for transform, min_size in (
        (train_transform(preprocess, augment), train_decode_size(preprocess, augment)),
        (eval_transform(preprocess), preprocess.resize_size),
    ):
        transform(open_image(chosen[0].path, min_size=min_size))  # warm-up, untimed
        started = time.perf_counter()
        for sample in chosen:
            transform(open_image(sample.path, min_size=min_size))
        timings.append((time.perf_counter() - started) / len(chosen))
    return timings[0], timings[1]
