"""`imagefit add-class`: a new class from a few example images, added to a copy of a run without retraining.

The new class gets one new row of the head's last layer; the old rows and the backbone stay as
they are. The row starts *imprinted* (Qi et al., CVPR 2018: along the mean of its examples'
penultimate features) and is then fitted alone, by the softmax cross-entropy of the grown head,
on the examples and on up to NEGATIVES_PER_CLASS training images of each known class: so the new
logit is on the scale of the others. The copy is a normal run folder: predict, evaluate, export
and serve treat the class like the others. (A nearest-prototype layer was measured against this;
see benchmarks/RESULTS.md.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from imagefit import runs
from imagefit.errors import UserError
from imagefit.files import save_tensors, write_json, write_rows

MOST_EXAMPLES = 20


def penultimate(model, predictor, paths: list[str]) -> tuple[list[str], np.ndarray]:
    """(readable paths, inputs of the head's last layer [N, H]), averaged over the run's test-time views."""
    import torch

    from imagefit.prediction.batches import map_batches

    def features(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            images = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return model.head[:-1](model.backbone(images)).float().numpy()

    readable, values, _ = map_batches(features, predictor.preprocess, paths, views=predictor.tta_n)
    return readable, values


def add_class(run_path: str | Path, name: str, images: list[str | Path], *, out: str | Path) -> runs.Run:
    """A copy of RUN at OUT that also knows NAME, from 1-20 example images; no retraining."""
    import torch

    from imagefit.prediction.ensembles import is_ensemble
    from imagefit.prediction.inputs import collect_inputs
    from imagefit.prediction.predictors import TorchPredictor

    source = Path(run_path)
    if source.suffix.lower() == ".onnx" or is_ensemble(source):
        raise UserError(f"{source}: add-class works on a run folder, not an ONNX model or an ensemble")
    run = runs.load_run(source)
    run.task.require("add-class", run.path)
    name = name.strip()
    if not name:
        raise UserError("the new class needs a name")
    if name in run.classes:
        raise UserError(f"'{name}' is already a class of {run.path}: {', '.join(run.classes)}")
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} exists and is not empty. Pick another --out")
    predictor = TorchPredictor.from_run(run.path)
    model = predictor.model
    paths, examples = penultimate(model, predictor, collect_inputs(list(images))[:MOST_EXAMPLES])
    if not paths:
        raise UserError(f"none of {', '.join(str(i) for i in images)} is a readable image; nothing to learn from")
    last = model.head[-1]
    negatives, labels = _known_features(run, model, predictor)
    row, offset = fit_new_row(last.weight.detach(), last.bias.detach(), torch.from_numpy(examples), negatives, labels)
    grown = torch.nn.Linear(last.in_features, last.out_features + 1)
    with torch.no_grad():
        grown.weight.copy_(torch.cat([last.weight.detach(), row[None]]))
        grown.bias.copy_(torch.cat([last.bias.detach(), offset[None]]))
    model.head[-1] = grown
    _write_copy(run, target, name, paths, model, predictor)
    return runs.load_run(target)


NEGATIVES_PER_CLASS = 50


def _known_features(run: runs.Run, model, predictor):
    """Penultimate features and classes of up to NEGATIVES_PER_CLASS training images of each known class."""
    import torch

    chosen: dict[str, list[str]] = {}
    for sample in run.split():
        if sample.split == "train" and len(chosen.setdefault(sample.label, [])) < NEGATIVES_PER_CLASS:
            chosen[sample.label].append(sample.path)
    paths = [p for members in chosen.values() for p in members]
    label_of = {p: run.classes.index(label) for label, members in chosen.items() for p in members}
    readable, features = penultimate(model, predictor, paths)
    return torch.from_numpy(features), torch.tensor([label_of[p] for p in readable])


def fit_new_row(weight, bias, examples, negatives, labels, *, steps: int = 200):
    """(row, bias) of a new class: imprinted, then fitted alone by the grown head's cross-entropy.

    The examples (class C, the new one) weigh as much in the loss as all known images together.
    """
    import torch
    import torch.nn.functional as F

    direction = examples.mean(dim=0)
    row = (direction / direction.norm().clamp_min(1e-12) * weight.norm(dim=1).mean()).clone().requires_grad_(True)
    offset = bias.mean().clone().requires_grad_(True)
    features = torch.cat([negatives, examples])
    targets = torch.cat([labels, torch.full((len(examples),), len(bias), dtype=torch.long)])
    weights = torch.cat([torch.ones(len(negatives)), torch.full((len(examples),), len(negatives) / len(examples))])
    fixed = features @ weight.T + bias
    optimizer = torch.optim.LBFGS([row, offset], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        logits = torch.cat([fixed, (features @ row + offset)[:, None]], dim=1)
        value = (F.cross_entropy(logits, targets, reduction="none") * weights).sum() / weights.sum()
        value = value + 1e-3 * row.pow(2).sum()  # a little weight decay: a few examples must not overfit
        value.backward()
        return value

    optimizer.step(loss)
    return row.detach(), offset.detach()


def _write_copy(run: runs.Run, target: Path, name: str, paths: list[str], model, predictor) -> None:
    """The run folder copied to TARGET with the grown head, the new label, its examples and a fresh evaluation."""
    files = runs.RunFiles(target)
    # the raw-pixel run beside it knows the old classes only: the copy is the grown network alone
    skipped = shutil.ignore_patterns("checkpoints", "*.onnx*", files.raw_pixels.name)
    shutil.copytree(run.path, target, dirs_exist_ok=True, ignore=skipped)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(files.model, weights)
    write_json(files.labels, [*run.classes, name])
    samples = run.split()
    write_rows(
        files.split,
        ["path", "label", "split"],
        [[s.path, s.label, s.split] for s in samples] + [[p, name, "train"] for p in paths],
    )
    record = runs.ConfigRecord(files)
    record.add_class({"name": name, "examples": len(paths)})
    config = record.values()
    index = predictor.unknown
    if index is not None and "unknown" in config:  # the new class's examples join the training embeddings
        from imagefit.prediction.openset import normalise

        _, embeddings = _embeddings(model, predictor, paths)
        index.embeddings = np.vstack([index.embeddings, normalise(embeddings)])
        index.save(target / config["unknown"]["index"])
    metrics = {"best_epoch": run.metrics.get("best_epoch"), "added_class": name}
    write_json(files.metrics, metrics)
    for stale in files.all_predictions():
        stale.unlink()
    files.report.unlink(missing_ok=True)
    from imagefit.evaluation.evaluator import evaluate

    evaluate(target)


def _embeddings(model, predictor, paths: list[str]) -> tuple[list[str], np.ndarray]:
    import torch

    from imagefit.prediction.batches import map_batches

    def features(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model.backbone(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)).numpy()

    readable, values, _ = map_batches(features, predictor.preprocess, paths, views=predictor.tta_n)
    return readable, values
