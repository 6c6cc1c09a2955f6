"""Commands over run folders: compare, ensemble, evaluate, predict, explain, report, export."""

from __future__ import annotations

from pathlib import Path

import typer

from imagefit.cli.app import (
    app,
    check_data,
    check_inputs,
    check_model_path,
    check_run,
    console,
    print_comparison,
    print_ensemble_figures,
    user_errors,
)
from imagefit.errors import UserError

SHOW_PREDICTIONS = 20  # predict prints each image's top 3 when it has at most this many


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="run folders"),
    out: Path | None = typer.Option(None, help="also write the table as this CSV (and .html beside it)"),
    sort: str = typer.Option("", help="column to sort by (default: test accuracy, or val accuracy)"),
) -> None:
    """Runs side by side: backbone, sizes, parameters, epochs, time, speed, accuracy, macro-F1, ECE."""
    with user_errors():
        print_comparison(runs, sort=sort, out=out)


@app.command()
def ensemble(
    runs: list[Path] = typer.Argument(..., help="run folders trained on the same split"),
    out: Path = typer.Option(..., help="ensemble folder to write"),
    method: str = typer.Option("weighted", help="mean | weighted (fitted on val log loss) | greedy (Caruana)"),
) -> None:
    """Average runs' probabilities with weights fitted on their shared validation split."""
    from imagefit.evaluation.ensembles import make_ensemble

    with user_errors():
        made = make_ensemble(runs, out=out, method=method)
        weights = ", ".join(f"{m.name} {w:.2f}" for m, w in zip(made.members, made.weights, strict=True))
        print_ensemble_figures(made)
        console.print(f"weights: {weights}", highlight=False)
        console.print(f"ensemble folder: {made.path}", highlight=False)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="run folder"),
    data: Path | None = typer.Argument(None, help="other data with the same classes (default: the run's val/test)"),
    split: str | None = typer.Option(None, help="only this split: val or test (or train/val/test of DATA)"),
    tta_n: int | None = typer.Option(None, help="test-time views to average (default: the run's choice; 1 = none)"),
    unknown: bool = typer.Option(False, help="DATA may hold classes the run never saw: measure how they are flagged"),
    backend: str = typer.Option(
        "auto",
        help="auto (PyTorch; with --model: ONNX Runtime for .onnx, OpenVINO for .xml) | torch | onnx | openvino: "
        "onnx and openvino evaluate the exported model (--model, default the run's model.onnx, exported on first "
        "use) on the run's val/test, its figures kept under metrics.json's `exported`",
    ),
    model: Path | None = typer.Option(
        None,
        help="an exported .onnx or .xml model of the run (e.g. model.int8.onnx); of an ensemble folder, an exported "
        "ensemble's JSON (e.g. ENS/openvino-int8/ensemble.json)",
    ),
) -> None:
    """Accuracy, balanced accuracy, macro-F1, top-5, log loss, calibration and per-class figures; writes CSVs."""
    with user_errors():
        check_run(run)
        if data is not None:
            check_data(data)
        from imagefit.evaluation.summaries import print_evaluation

        if backend not in ("auto", "torch") or model is not None:
            print_evaluation(_evaluate_exported(run, data, backend, model, split, tta_n, unknown), console)
            return
        from imagefit.evaluation.evaluator import evaluate as evaluate_run

        print_evaluation(evaluate_run(run, data, split=split, tta_n=tta_n, unknown=unknown), console)


def _evaluate_exported(run: Path, data, backend: str, model: Path | None, split, tta_n, unknown: bool):
    """`evaluate --backend onnx|openvino` or `--model FILE`: the exported model on the run's own splits."""
    from imagefit.evaluation.exported import evaluate_exported

    if data is not None or unknown:
        raise UserError("--backend and --model evaluate on the run's own val/test: drop DATA and --unknown")
    if backend == "torch":
        raise UserError(f"--model {model} is an exported model: drop --backend torch (or --model)")
    if backend == "auto":
        backend = "onnx"  # OpenVINO's IR (.xml, or an ensemble of them) runs in OpenVINO all the same
    if model is None:
        from imagefit.export.onnx import exported_graph

        model = exported_graph(run)
    return evaluate_exported(run, backend=backend, model=model, split=split, tta_n=tta_n)


@app.command()
def predict(
    model: Path = typer.Argument(
        ..., help="run or ensemble folder (or its ensemble.json), an exported .onnx/.xml model or ensemble.json"
    ),
    inputs: list[Path] = typer.Argument(..., help="image files, folders (recursive) or .zip files"),
    out: Path = typer.Option(Path("preds.csv"), help="CSV to write (Id,Category)"),
    tta: bool | None = typer.Option(
        None, "--tta/--no-tta", help="average test-time views (default: what the run chose on val)"
    ),
    tta_n: int | None = typer.Option(None, help="views (1-6): mirror first, then zoomed crops (--tta: 2)"),
    full: bool = typer.Option(False, help="add path, confidence, the top-3 classes, and the unknown flag and score"),
    unknown_label: str | None = typer.Option(None, help="write this label for images flagged unknown"),
    overwrite: bool = typer.Option(False, help="replace OUT if it exists"),
    batch_size: int = typer.Option(32, help="images per batch"),
    backend: str = typer.Option(
        "auto",
        help="auto (a run folder: PyTorch; .onnx: ONNX Runtime; .xml: OpenVINO) | torch | onnx | openvino "
        "(a run folder's model.onnx is exported on first use)",
    ),
    adapt: bool = typer.Option(
        False,
        help="first re-estimate BatchNorm statistics on these images, relative to the training images (test-time "
        "adaptation for a shifted test set; a run or ensemble folder); says the shift and how many predictions changed",
    ),
) -> None:
    """Predict images with a run or an .onnx model and write an Id,Category CSV."""
    with user_errors():
        if out.exists() and not overwrite:  # before the prediction pass, not after it
            raise UserError(f"{out} exists. Pass --overwrite or another --out")
        check_model_path(model)
        check_inputs(inputs)
        from imagefit.prediction.loading import predict as predict_images
        from imagefit.prediction.output import write_csv

        model, runtime = _exported_for(model, backend, adapt)
        predictions = predict_images(
            model, inputs, tta=tta, tta_n=tta_n, batch_size=batch_size, adapt=adapt, runtime=runtime
        )
        _say_skipped(predictions, inputs, out)
        write_csv(predictions, out, full=full, overwrite=overwrite, unknown_label=unknown_label)
        if len(predictions.paths) <= SHOW_PREDICTIONS:
            for line in predictions.top_k_lines(3):
                print(line)
        console.print(f"{len(predictions.paths)} predictions written to {out}", highlight=False)


def _say_skipped(predictions, inputs: list[Path], out: Path) -> None:
    """The adaptation's line and the unreadable files; UserError when no image could be read (OUT not written)."""
    from imagefit.data.inventory import listing
    from imagefit.data.sources import locator_name

    if not predictions.paths:
        shown = [f"{locator_name(p)} ({why})" for p, why in predictions.skipped[:3]]
        why = f": {', '.join(shown)}" if shown else ""
        raise UserError(f"none of {', '.join(map(str, inputs))} is a readable image{why}; {out} not written")
    if predictions.adaptation is not None:
        console.print(predictions.adaptation.line(), highlight=False)
    if predictions.skipped:
        shown = [f"{locator_name(p)} ({why})" for p, why in predictions.skipped]
        warning = listing(f"skipped {len(predictions.skipped)} unreadable files", shown)
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _exported_for(model: Path, backend: str, adapt: bool) -> tuple[Path, str]:
    """What predict loads for BACKEND: MODEL, or a run folder's exported graph; and the ONNX file's runtime."""
    from imagefit.serving.backend import BACKENDS

    if backend not in BACKENDS:
        raise UserError(f"--backend {backend} is not one of: {', '.join(BACKENDS)}")
    exported = model.suffix.lower() in (".onnx", ".xml", ".json")
    if backend == "torch" and exported:
        raise UserError(f"{model} is an exported model: give its run folder for --backend torch")
    runtime = "openvino" if backend == "openvino" else "onnxruntime"
    if backend in ("onnx", "openvino") and not exported:
        if adapt:
            raise UserError("--adapt re-estimates BatchNorm in PyTorch: drop --backend or --adapt")
        from imagefit.export.onnx import exported_graph

        return exported_graph(model), runtime
    return model, runtime


@app.command()
def explain(
    run: Path = typer.Argument(..., help="run folder"),
    images: list[Path] = typer.Argument(..., help="image files, folders or .zip files"),
    out: Path | None = typer.Option(None, help="folder for the PNG overlays (default RUN/explain)"),
    target: str | None = typer.Option(None, help="class to explain (default: the predicted one)"),
) -> None:
    """Grad-CAM heat maps of where the model looks, saved as PNG overlays."""
    with user_errors():
        check_run(run)
        check_inputs(images)
        from imagefit.prediction.gradcam import explain as explain_images
        from imagefit.runs import RunFiles

        explanations = explain_images(run, images, out_dir=out, target=target)
        console.print(
            f"{len(explanations)} Grad-CAM overlays written to {out or RunFiles(run).explain}", highlight=False
        )


@app.command()
def report(run: Path = typer.Argument(..., help="run folder")) -> None:
    """Write RUN/report.html: summary, curves, confusion matrix, per-class table, mistakes, Grad-CAM, calibration."""
    with user_errors():
        check_run(run)
        from imagefit.report.writer import write_report

        console.print(f"report: {write_report(run)}", highlight=False)


@app.command()
def export(
    run: Path = typer.Argument(..., help="run folder, or ensemble folder (one graph a member, in a folder)"),
    format: str = typer.Option("onnx", help="onnx | openvino (IR: RUN/model.xml + .bin, from the ONNX graph)"),
    out: Path | None = typer.Option(
        None,
        help="output path (default RUN/model.onnx, RUN/model.int8.onnx, RUN/model.xml; an ensemble: ENS/onnx, "
        "ENS/onnx-int8, ENS/openvino, ENS/openvino-int8)",
    ),
    overwrite: bool = typer.Option(False, help="replace OUT if it exists"),
    int8: bool = typer.Option(
        False,
        help="quantize to int8 (onnx: ONNX Runtime, static, per-channel; openvino: NNCF), checked against the "
        "float model on val",
    ),
    int8_calibration: int = typer.Option(256, help="training images that calibrate the int8 activation ranges"),
) -> None:
    """Export the model to ONNX (or OpenVINO IR) with its labels and preprocessing beside it as JSON."""
    with user_errors():
        if format not in ("onnx", "openvino"):
            raise UserError(f"--format {format} is not supported; use --format onnx or --format openvino")
        check_run(run)
        target, check = _exported(run, format, out=out, overwrite=overwrite, int8=int8, calibration=int8_calibration)
        if check is not None:
            console.print(check.line(), highlight=False)
        console.print(f"exported: {target}", highlight=False)


def _exported(run: Path, format: str, *, out: Path | None, overwrite: bool, int8: bool, calibration: int):
    """The exported file (an ensemble's: its ensemble.json) and the int8 check it passed (None for float)."""
    from imagefit.prediction.ensembles import is_ensemble

    if (int8 or format == "openvino") and is_ensemble(run):
        from imagefit.export.ensembles import export_ensemble

        return export_ensemble(run, fmt=format, int8=int8, out=out, calibration=calibration, overwrite=overwrite)
    if format == "openvino":
        from imagefit.export.openvino import export_openvino

        return export_openvino(run, out=out, overwrite=overwrite, int8=int8, calibration=calibration)
    if int8:
        from imagefit.export.int8 import export_int8

        return export_int8(run, out=out, calibration=calibration, overwrite=overwrite)
    from imagefit.export.onnx import export_onnx

    return export_onnx(run, out=out, overwrite=overwrite), None
