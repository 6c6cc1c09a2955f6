"""Export a run's model to ONNX, with its labels and preprocessing beside it, and check it against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagefit.errors import UserError
from imagefit.files import refuse_overwrite, write_json
from imagefit.runs import load_run

OPSET = 18


def export_onnx(run_path: str | Path, *, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write RUN/model.onnx (or OUT) and the JSON of labels and preprocessing beside it; returns the .onnx path.

    The graph takes float32 [N, 3, size, size] named `images` (any N) at the run's evaluation size
    and returns `logits`, whose softmax is the run's calibrated probabilities: the temperature and
    the mirrored test-time view the run chose on val are inside the graph, so ONNX Runtime gives
    the figures `imagefit evaluate` reports. It is checked with the ONNX checker and against
    PyTorch on a random batch before this returns.
    """
    import onnx
    import torch

    run = load_run(Path(run_path))
    target = Path(out) if out else run.path / "model.onnx"
    if target.suffix.lower() != ".onnx":
        raise UserError(f"{target}: the output name must end in .onnx")
    for written in (target, target.with_suffix(".json")):  # the graph and the facts beside it
        refuse_overwrite(written, overwrite=overwrite)
    inference = run.inference
    model = deployed(run.load_model(), temperature=inference.temperature, tta_n=inference.tta_n)
    size = inference.preprocess.size
    example = torch.randn(2, 3, size, size)
    torch.onnx.export(
        model,
        (example,),
        str(target),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter needs no onnxscript and gives a single self-contained file
    )
    onnx.checker.check_model(str(target))
    facts = {
        "classes": run.classes,
        "preprocess": run.preprocess.to_dict(),
        "model": run.recipe.model.model,
        "run": str(run.path.resolve()),
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32"},
    }
    write_json(target.with_suffix(".json"), facts)
    _check_against_torch(model, target, example)
    return target


def deployed(model, *, temperature: float = 1.0, tta_n: int = 1):
    """The model as prediction applies it: logits / temperature, averaged with its mirror's as probabilities."""
    import torch

    class Deployed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            logits = self.model(images) / temperature
            if tta_n == 1:
                return logits
            mirrored = self.model(torch.flip(images, dims=[3])) / temperature
            return torch.log((logits.softmax(dim=1) + mirrored.softmax(dim=1)) / 2)

    if tta_n not in (1, 2):
        raise UserError(f"export holds one view or the image and its mirror, not tta_n={tta_n}")
    return Deployed().eval()


def _check_against_torch(model, target: Path, example) -> None:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": example.numpy()})
    with torch.inference_mode():
        expected = model(example).numpy()
    if not np.allclose(logits, expected, atol=1e-3, rtol=1e-3):
        raise RuntimeError(
            f"ONNX export of {target} disagrees with PyTorch (max diff {np.abs(logits - expected).max()})"
        )
