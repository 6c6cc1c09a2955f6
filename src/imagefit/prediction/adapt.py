"""Test-time adaptation (`imagefit predict --adapt`): BatchNorm statistics re-estimated on the images being
predicted, relative to what the model saw in training.

imagefit fine-tunes with the backbone's BatchNorm statistics kept at their pretrained values, so plain
AdaBN (Li et al. 2016; Schneider et al. 2020), which puts the predicted images' own statistics in their
place, would change the predictions even of images like the training ones. Here each BatchNorm layer's
statistics are set so that the predicted images' inputs to it are normalised to the same mean and spread
as the training images' were: with (m_s, v_s) the per-channel moments of the training images' inputs
(measured once on up to REFERENCE_IMAGES of them, cached in the run folder as
batchnorm-reference.safetensors), (m_t, v_t) those of the
predicted images and (mu, sigma) the layer's own statistics,

    sigma' = sigma * sqrt(v_t / v_s),   mu' = m_t - sigma' * (m_s - mu) / sigma.

Only the first ADAPT_SHARE of the BatchNorm layers adapt, from the input on, each seeing the previous
ones already adapted (surgical fine-tuning's finding, Lee et al. 2023: input-level shifts live in the
early layers). Deeper layers' statistics also follow the class mix of the predicted images, and adapting
them all lost 10 points of accuracy on clothing-small's unshifted test set; the first 12 of lite1's 64
(0.2) gained 2.4-2.7 points under heavy blur and pixel noise and moved the unshifted set by one image
(benchmarks/RESULTS.md). The predicted images' moments are shrunk toward the training ones as if
PRIOR_IMAGES training images were among them (Schneider et al.'s prior; `imagefit.prediction.moments`), so
a handful of images moves little. On images like the training ones m_t = m_s and v_t = v_s, and nothing
changes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imagefit import runs
from imagefit.errors import UserError
from imagefit.prediction.batches import map_batches
from imagefit.prediction.moments import MomentRecorder, Moments, batchnorm_layers, shift_from

REFERENCE_IMAGES = 256  # training images measured once for the reference moments
ADAPT_SHARE = 0.2  # the share of BatchNorm layers, from the input, that adapt
# The mean standardised shift of the adapted layers' inputs from the training images above which --adapt
# adapts. On clothing-small's test set (benchmarks/RESULTS.md): unshifted 0.036, JPEG quality 20 0.035,
# blur 0.094, grayscale 0.100 (adapting there moved accuracy by -0.8 to +0.3 points); a colour cast 0.148,
# pixel noise 0.148, heavy blur 0.198, dim 0.271 (0 to +3.8 points).
LARGE_SHIFT = 0.12


def record_pass(predictor, locators: list[str], recorder: MomentRecorder, *, batch_size: int, threads: int) -> None:
    """One plain view of each of LOCATORS through the predictor's backbone(s), the recorder's hooks on."""
    with recorder, torch.inference_mode():
        map_batches(
            lambda batch: _backbone_only(predictor, batch),
            predictor.preprocess,
            locators,
            views=1,
            batch_size=batch_size,
            threads=threads,
        )


def _backbone_only(predictor, batch: np.ndarray) -> np.ndarray:
    """The whole batch in one pass (not in_chunks' small chunks): each adapted layer's first estimate then rests on
    a batch of images, not a few."""
    images = torch.from_numpy(batch).to(predictor.device).contiguous(memory_format=torch.channels_last)
    predictor.model.backbone(images)
    return np.zeros((len(batch), 1), dtype=np.float32)


def reference_moments(predictor, *, batch_size: int = 32, threads: int = 0) -> Moments:
    """The training images' moments at the predictor's input size: from the run folder's cache, else measured on
    up to REFERENCE_IMAGES training images (split.csv) and cached there."""
    from safetensors.torch import load_file

    from imagefit.files import save_tensors

    run_path = getattr(predictor, "run_path", None)
    if run_path is None:
        raise UserError("--adapt needs a run folder: an exported model has its BatchNorm statistics folded in")
    cache = runs.RunFiles(Path(run_path)).batchnorm_reference
    size = predictor.preprocess.size
    if cache.exists():
        moments, measured_at = Moments.from_tensors(load_file(str(cache)))
        if measured_at == size and len(moments.means) == len(batchnorm_layers(predictor.model.backbone)):
            return moments
    train = [s.path for s in runs.load_run(Path(run_path)).split() if s.split == "train"]
    chosen = sorted(random.Random(0).sample(train, min(REFERENCE_IMAGES, len(train))))
    recorder = MomentRecorder([predictor.model.backbone])
    record_pass(predictor, chosen, recorder, batch_size=batch_size, threads=threads)
    moments = recorder.moments()[0]
    if moments.images == 0:
        raise UserError(
            f"{run_path}: --adapt measures the run's training images once (split.csv), and none could be read. "
            "Put the training data back where the run found it"
        )
    try:
        save_tensors(cache, moments.to_tensors(size))
    except OSError:  # a read-only run folder: measured again next time
        pass
    return moments


def adaptable(predictor) -> list:
    """The PyTorch predictors inside PREDICTOR (itself, or an ensemble's members); UserError for exported models."""
    members = getattr(predictor, "members", [predictor])
    if any(not hasattr(m, "model") for m in members):
        raise UserError(
            "--adapt needs a run or ensemble folder (PyTorch): an exported model has its BatchNorm statistics "
            "folded in. Pass the run folder"
        )
    return members


def adapted_depth(layers: int) -> int:
    """How many BatchNorm layers, from the input, adapt: ADAPT_SHARE of them, at least one."""
    return max(1, int(ADAPT_SHARE * layers)) if layers else 0


def adapt_members(
    members: Iterable, references: list[Moments], locators: list[str], *, batch_size: int, threads: int, depth=None
):
    """Adapt the first DEPTH (default: adapted_depth) BatchNorm layers of every member to LOCATORS (one plain view
    each), in place."""
    for member, reference in zip(members, references, strict=True):
        layers = depth if depth is not None else adapted_depth(len(reference.means))
        recorder = MomentRecorder([member.model.backbone], [reference], [layers])
        record_pass(member, locators, recorder, batch_size=batch_size, threads=threads)


@dataclass
class Adaptation:
    """What --adapt measured and did: BatchNorm layers, images, their shift from the training images, and how many
    predictions changed."""

    layers: int  # BatchNorm layers adapted (each member's first ones); 0 when the shift was too small
    images: int
    shift: float | None = None  # over the adapted layers
    changed: int = 0
    of: int = 0  # BatchNorm layers in the model

    def to_dict(self) -> dict:
        return {
            "layers": self.layers,
            "of": self.of,
            "images": self.images,
            "shift": self.shift,
            "changed": self.changed,
        }

    def line(self) -> str:
        if not self.of:
            return "adapt: the model has no BatchNorm layers, so --adapt changes nothing"
        measured = f"adapt: {self.images} images' BatchNorm input shift from the training images {self.shift:.3f}"
        if not self.layers:
            return f"{measured} (small; adapting above {LARGE_SHIFT}): predictions as without --adapt"
        share = self.changed / max(1, self.images)
        return (
            f"{measured} (large; above {LARGE_SHIFT}): the first {self.layers} of {self.of} BatchNorm layers "
            f"re-estimated on them changed {self.changed} of {self.images} predictions ({share:.1%})"
        )


def predict_adapted(predictor, locators: list[str], *, tta_n: int | None, batch_size: int, threads: int = 0):
    """Predictions after the predictor's BatchNorm statistics are adapted to LOCATORS when their shift from the
    training images is over LARGE_SHIFT (else as they were), with an Adaptation saying how far the images were and
    how many predictions adapting changed. The predictor stays adapted."""
    from imagefit.prediction.batches import predict_with

    members = adaptable(predictor)
    layers = max(len(batchnorm_layers(m.model.backbone)) for m in members)
    if not layers:
        predictions = predict_with(predictor, locators, tta_n=tta_n, batch_size=batch_size, threads=threads)
        predictions.adaptation = Adaptation(0, len(predictions.paths), of=0)
        return predictions
    references = [reference_moments(m, batch_size=batch_size, threads=threads) for m in members]
    depths = [adapted_depth(len(r.means)) for r in references]
    with MomentRecorder([m.model.backbone for m in members], depths=depths) as recorder:
        before = predict_with(predictor, locators, tta_n=tta_n, batch_size=batch_size, threads=threads)
    seen = recorder.moments()
    shift = float(np.mean([shift_from(r, s) for r, s in zip(references, seen, strict=True)]))
    if shift <= LARGE_SHIFT:
        before.adaptation = Adaptation(0, len(before.paths), shift, 0, of=layers)
        return before
    adapt_members(members, references, before.paths, batch_size=batch_size, threads=threads)
    after = predict_with(predictor, before.paths, tta_n=tta_n, batch_size=batch_size, threads=threads)
    after.skipped = before.skipped
    changed = sum(a != b for a, b in zip(before.labels, after.labels, strict=True))
    after.adaptation = Adaptation(max(depths), len(after.paths), shift, changed, of=layers)
    return after
