"""A greedy model soup of the fine-tuning epochs: average the weights of the epochs that lower val loss.

Wortsman et al. (2022, "Model soups") average the weights of fine-tuned models; their greedy
recipe adds candidates best first and keeps one only when the held-out score improves. Here
the candidates are the epochs of one fine-tuning run (they share a start and lie in one basin,
as in SWA), ordered by their val loss, and a candidate joins when the uniform average of the
soup with it lowers val loss. The soup is one set of weights: predict, evaluate and export are
unchanged. Each epoch's weights are saved by `EpochWeights` while the run trains.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import load_file

from imagefit.files import cpu_tensors, save_tensors

MAX_CANDIDATES = 5  # epochs tried, best val loss first: each costs one pass over val


def epoch_file(folder: Path, epoch: int) -> Path:
    return Path(folder) / f"epoch-{epoch}.safetensors"


class EpochWeights(L.Callback):
    """Save the model's weights after each fine-tuning epoch as FOLDER/epoch-N.safetensors (N as history.csv)."""

    def __init__(self, folder: Path, *, offset: int = 0, start_epoch: int = 0):
        self.folder = Path(folder)
        self.offset = offset  # head epochs run before Lightning's first (cached features)
        self.start_epoch = start_epoch  # Lightning's first fine-tuning epoch

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch < self.start_epoch or not trainer.is_global_zero:
            return
        self.folder.mkdir(parents=True, exist_ok=True)  # before ModelCheckpoint's first save makes it
        epoch = trainer.current_epoch + 1 + self.offset
        save_tensors(epoch_file(self.folder, epoch), cpu_tensors(pl_module.model.state_dict()))


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of state dicts; integer tensors (BatchNorm's step counts) come from the first."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([state[key].float() for state in states]).mean(0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


@dataclass
class Soup:
    weights: dict[str, torch.Tensor]
    epochs: list[int]  # the averaged epochs, the first the kept single epoch
    val_loss: float
    single_val_loss: float  # the kept single epoch's, measured the same way
    tried: list[int]


def greedy_soup(
    kept_epoch: int,
    val_losses: dict[int, float],
    load: Callable[[int], dict[str, torch.Tensor]],
    score: Callable[[dict[str, torch.Tensor]], float],
    *,
    max_candidates: int = MAX_CANDIDATES,
    time_left: Callable[[], float] | None = None,
) -> Soup:
    """Start from the kept epoch; try the others by their recorded val loss; keep each that lowers `score`.

    `load(epoch)` gives an epoch's weights, `score(weights)` their val loss (lower is better).
    With `time_left` (seconds), no candidate is tried once less time is left than one score took.
    """
    members = [load(kept_epoch)]
    epochs = [kept_epoch]
    started = time.perf_counter()
    single = best = score(members[0])
    one_pass = time.perf_counter() - started
    others = sorted((e for e in val_losses if e != kept_epoch), key=lambda e: (val_losses[e], e))
    tried = []
    soup = members[0]
    for epoch in others[: max(0, max_candidates - 1)]:
        if time_left is not None and time_left() < one_pass:
            break
        tried.append(epoch)
        candidate = load(epoch)
        mixed = average([*members, candidate])
        loss = score(mixed)
        if loss < best:
            members.append(candidate)
            epochs.append(epoch)
            best, soup = loss, mixed
    return Soup(soup, epochs, best, single, tried)


def val_loss_fn(model: torch.nn.Module, loader, loss: Callable, device: str) -> Callable[[dict], float]:
    """score(weights) for greedy_soup: MODEL with those weights, its mean loss over LOADER (eval mode)."""

    def score(weights: dict[str, torch.Tensor]) -> float:
        model.load_state_dict(weights)
        model.eval().to(device)
        total, count = 0.0, 0
        with torch.inference_mode():
            for images, targets in loader:
                images = images.to(device).contiguous(memory_format=torch.channels_last)
                logits = model(images)
                total += float(loss(logits, targets.to(device))) * len(images)
                count += len(images)
        return total / max(1, count)

    return score


def load_epoch(folder: Path) -> Callable[[int], dict[str, torch.Tensor]]:
    return lambda epoch: load_file(str(epoch_file(folder, epoch)))
