"""Export a run's model to ONNX, with its labels and preprocessing beside it, and check it against PyTorch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from imagefit.errors import UserError
from imagefit.files import output_folder, refuse_overwrite, write_json
from imagefit.runs import RunFiles, load_run
from imagefit.tasks import SINGLE, Task, task_for

OPSET = 18
OUTPUT_MEANING = {  # the graph's first output, by the task's name for it
    "logits": "softmax gives the calibrated probabilities",
    "probabilities": "sigmoid probabilities, one a label",
}


def export_onnx(run_path: str | Path, *, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write RUN/model.onnx (or OUT) and the JSON of labels and preprocessing beside it; returns the .onnx path.

    The graph takes float32 [N, 3, size, size] named `images` (any N) at the run's evaluation size
    and returns `logits`, whose softmax is the run's calibrated probabilities (a multi-label run: `probabilities`,
    the sigmoid of each label), then `embedding`: the temperature and
    the mirrored test-time view the run chose on val are inside the graph, so ONNX Runtime gives
    the figures `imagefit evaluate` reports. It is checked with the ONNX checker and against
    PyTorch on a random batch before this returns.
    """
    import onnx
    import torch

    from imagefit.models.trained import load_trained
    from imagefit.prediction.ensembles import is_ensemble

    if is_ensemble(run_path):
        return _export_ensemble(Path(run_path), out=Path(out) if out else None, overwrite=overwrite)
    run = load_run(Path(run_path))
    target = Path(out) if out else run.files.onnx
    if target.suffix.lower() != ".onnx":
        raise UserError(f"{target}: the output name must end in .onnx")
    for written in (target, target.with_suffix(".json")):  # the graph and the facts beside it
        refuse_overwrite(written, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    inference = run.inference
    task = run.task
    model = deployed(load_trained(run), temperature=inference.temperature, tta_n=inference.tta_n, task=task)
    first = task.onnx_output
    size = inference.preprocess.size
    example = torch.randn(2, 3, size, size)
    torch.onnx.export(
        model,
        (example,),
        str(target),
        input_names=["images"],
        output_names=[first, "embedding"],
        dynamic_axes={"images": {0: "batch"}, first: {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter needs no onnxscript and gives a single self-contained file
    )
    onnx.checker.check_model(str(target))
    facts = _facts(run, target)
    write_json(target.with_suffix(".json"), facts)
    _check_against_torch(model, target, example)
    return target


def exported_graph(run_path: str | Path) -> Path:
    """RUN/model.onnx, exported on first use (what the ONNX Runtime and OpenVINO backends of a run folder read);
    of an ensemble folder, ENS/onnx/ensemble.json (one graph a member)."""
    from imagefit.prediction.ensembles import is_ensemble

    if is_ensemble(run_path):
        target = RunFiles(Path(run_path)).onnx_ensemble
        return target if target.exists() else _export_ensemble(Path(run_path), out=None, overwrite=False)
    target = load_run(Path(run_path)).files.onnx
    return target if target.exists() else export_onnx(run_path, out=target)


def _facts(run, target: Path) -> dict:
    """What the JSON beside the graph says: labels, preprocessing, outputs, task and thresholds, and the unknown
    index (the training embeddings travel with the graph, copied beside it)."""
    first = run.task.onnx_output
    facts = {
        "classes": run.classes,
        "preprocess": run.preprocess.to_dict(),
        "model": run.recipe.model.backbone,
        "run": str(run.path.resolve()),
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32"},
        "outputs": {first: OUTPUT_MEANING[first], "embedding": "for the unknown score"},
        "task": run.task.name,
    }
    if run.thresholds is not None:
        facts["thresholds"] = dict(zip(run.classes, map(float, run.thresholds), strict=True))
    unknown = run.config.get("unknown")
    if unknown and (run.path / unknown["index"]).exists():
        index_name = f"{target.stem}.{unknown['index']}"
        shutil.copyfile(run.path / unknown["index"], target.with_name(index_name))
        facts["unknown"] = {**unknown, "index": index_name}
    return facts


def _export_ensemble(path: Path, *, out: Path | None, overwrite: bool) -> Path:
    """One ONNX file per member and ensemble.json (weights, classes) in OUT (default ENS/onnx); its JSON path.

    One file per member, not one graph: members may differ in input size, normalisation and
    test-time views, which a single graph with one input could hold only by resizing inside it,
    and then the members would not see what they were trained and evaluated on.
    """
    from imagefit.prediction.ensembles import load_ensemble

    ensemble = load_ensemble(path)
    folder = output_folder(out or RunFiles(path).onnx_ensemble.parent)
    facts_path = folder / "ensemble.json"
    refuse_overwrite(facts_path, overwrite=overwrite)
    members = []
    for index, (member, weight) in enumerate(zip(ensemble.members, ensemble.weights, strict=True), start=1):
        onnx_path = export_onnx(member, out=folder / f"member-{index}.onnx", overwrite=overwrite)
        members.append({"file": onnx_path.name, "weight": weight, "run": str(member)})
    write_json(facts_path, {"kind": "onnx-ensemble", "classes": ensemble.classes, "members": members})
    return facts_path


def deployed(model, *, temperature: float = 1.0, tta_n: int = 1, task: str | Task = SINGLE):
    """The model as prediction applies it: the task's output (logits / temperature, or sigmoid probabilities),
    averaged with its mirror's view; the backbone's embedding, averaged the same way."""
    import torch

    task = task_for(task)

    class Deployed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            features = self.model.backbone(images)
            logits = self.model.head(features)
            if tta_n == 1:
                return task.exported(logits, None, temperature), features
            mirrored_features = self.model.backbone(torch.flip(images, dims=[3]))
            mirrored = self.model.head(mirrored_features)
            return task.exported(logits, mirrored, temperature), (features + mirrored_features) / 2

    if tta_n not in (1, 2):
        raise UserError(f"export holds one view or the image and its mirror, not tta_n={tta_n}")
    return Deployed().eval()


def _check_against_torch(model, target: Path, example) -> None:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(names, {"images": example.numpy()})
    with torch.inference_mode():
        expected = [tensor.numpy() for tensor in model(example)]
    for name, got, wanted in zip(names, outputs, expected, strict=True):
        if not np.allclose(got, wanted, atol=1e-3, rtol=1e-3):
            raise RuntimeError(
                f"ONNX export of {target} disagrees with PyTorch on {name} (max diff {np.abs(got - wanted).max()})"
            )
