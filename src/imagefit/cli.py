"""The `imagefit` command: a thin Typer face on the library; every command is one library call."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import typer
from rich.console import Console

from imagefit.config import field_help
from imagefit.errors import TrainingInterrupted, UserError

SHOW_PREDICTIONS = 20  # predict prints each image's top 3 when it has at most this many
console = Console(stderr=True, soft_wrap=True)  # long lines stay whole in logs
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn a folder of labelled images into the best classifier it can, by transfer learning.",
)


def _recipe_epilog() -> str:
    lines = ["Recipe options (any of them as --name value, e.g. --epochs 8 --model resnet50 --vflip true):", ""]
    lines += [f"--{name.replace('_', '-')} [{default}]  {text}" for name, default, text in field_help()]
    return "\n\n".join(lines)


@contextlib.contextmanager
def _user_errors():
    """Print a UserError as one line and exit with code 2; let bugs keep their tracebacks."""
    try:
        yield
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except TrainingInterrupted as exc:
        console.print(str(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        raise typer.Exit(code=130) from None


def parse_overrides(args: list[str]) -> dict[str, str]:
    """Recipe overrides from `--key value`, `--key=value`, `--flag` (true) and `--no-flag` (false)."""
    overrides, position = {}, 0
    while position < len(args):
        token = args[position]
        if not token.startswith("--") or len(token) < 3:
            raise UserError(f"unexpected argument '{token}'. Recipe options look like --epochs 8")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            following = args[position + 1] if position + 1 < len(args) else None
            if following is None or following.startswith("--"):
                value = "false" if key.startswith("no-") else "true"
                key = key.removeprefix("no-")
            else:
                value = following
                position += 1
        overrides[key.replace("-", "_")] = value
        position += 1
    return overrides


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=_recipe_epilog())
def train(
    ctx: typer.Context,
    data: Path | None = typer.Argument(
        None, help="folder of class folders, pre-split folders, CSV of path,label, or .zip"
    ),
    out: Path | None = typer.Option(None, help="write the run folder exactly here"),
    name: str | None = typer.Option(None, help="run name under --runs-dir (default: the data's name)"),
    runs_dir: Path = typer.Option(Path("runs"), help="where new run folders go"),
    resume: Path | None = typer.Option(None, help="continue this interrupted run folder"),
    report: bool = typer.Option(True, help="write report.html at the end"),
    quality: str = typer.Option(
        "balanced",
        help="fast (the head alone on frozen features) | balanced (head, then fine-tuning) | best (an ensemble of "
        "lite0, lite1, lite2 or the --model list, written to --out or <runs-dir>/<name>-best)",
    ),
    path_column: str | None = typer.Option(None, help="CSV column naming the images (default: found from the files)"),
    label_column: str | None = typer.Option(None, help="CSV column of the labels (default: label, class, ...)"),
    image_dir: Path | None = typer.Option(None, help="folder of a CSV's images, relative to the CSV"),
    label_delim: str | None = typer.Option(None, help="what parts several labels in a CSV cell (default: found)"),
) -> None:
    """Train a classifier on DATA with the full transfer-learning recipe and write a run folder."""
    with _user_errors():
        overrides = parse_overrides(ctx.args)
        _check_train_inputs(data, resume, overrides)  # before torch and Lightning are imported
        from imagefit.data.sources import CsvColumns
        from imagefit.training.entry import train as train_run

        _quiet_lightning()
        columns = CsvColumns(path_column, label_column, image_dir, label_delim)
        made = train_run(
            data, quality=quality, out=out, name=name, runs_dir=runs_dir, resume=resume, console=console,
            report=report, csv_columns=columns, **overrides,
        )  # fmt: skip
        if isinstance(made, list):  # --model a,b,c: one run each, then the table
            _print_comparison([run.path for run in made], sort="", out=None)
        elif quality != "balanced":
            _print_quality(made, console)


def _check_train_inputs(data: Path | None, resume: Path | None, overrides: dict) -> None:
    """UserError for a missing DATA or run folder, or a recipe option no recipe takes; imports no torch."""
    from imagefit.config import Recipe, fit_epochs
    from imagefit.data.sources import check_data_path
    from imagefit.runs import check_run_folder

    if resume is not None:
        check_run_folder(resume, resumable=True)
        return
    if data is None:
        raise UserError("no DATA given. Pass a folder of class folders, a CSV or a .zip")
    check_data_path(data)
    plain = {k: v for k, v in overrides.items() if not (k == "model" and "," in str(v))}
    Recipe().override(**fit_epochs(plain)[0])


def _print_quality(made, console) -> None:
    """After --quality best: the members and the ensemble, one line each; nothing more for one run."""
    from imagefit.prediction.ensembles import Ensemble

    if not isinstance(made, Ensemble):
        return
    _print_comparison(made.members, sort="", out=None)
    _print_ensemble_figures(made, prefix="ensemble ")
    console.print(
        f"ensemble folder: {made.path} (evaluate, predict, report and export read it as a run folder)", highlight=False
    )


def _print_ensemble_figures(made, *, prefix: str = "") -> None:
    """An ensemble's val and test figures, each against its best member."""
    for split in ("val", "test"):
        figures = made.metrics.get(split)
        if figures:
            console.print(
                f"{prefix}{split}: accuracy {figures['accuracy']:.4f}, macro-F1 {figures['macro_f1']:.4f} "
                f"({figures['gain_over_best_member']:+.4f} over the best member)",
                highlight=False,
            )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def tune(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="data, as for train"),
    trials: int = typer.Option(20, help="trials in the study in all (a second command adds up to this many)"),
    study: str | None = typer.Option(None, help="study name (default: the data's name)"),
    studies_dir: Path = typer.Option(Path("studies"), help="where study folders go"),
    storage: str | None = typer.Option(None, help="Optuna storage URL, e.g. postgresql://user:pw@host/db"),
    time_limit: str = typer.Option("", help="stop starting trials after this long (30m, 2h)"),
    workers: int = typer.Option(1, help="worker processes on this machine"),
    metric: str = typer.Option("macro_f1", help="val figure to maximise: macro_f1 or accuracy"),
    models: str = typer.Option("", help="backbones to choose from, comma-separated (default: the recipe's)"),
    sizes: str = typer.Option("", help="image sizes to choose from, comma-separated (default: the recipe's)"),
    seed: int = typer.Option(0, help="seed of the sampler"),
) -> None:
    """Search the recipe with Optuna (TPE, pruning on val loss); every trial is a run folder."""
    from imagefit.tuning.study import tune as tune_study

    _quiet_lightning()
    with _user_errors():
        tune_study(
            data,
            trials=trials,
            study=study,
            studies_dir=studies_dir,
            storage=storage,
            time_limit=time_limit,
            workers=workers,
            metric=metric,
            models=[m.strip() for m in models.split(",") if m.strip()],
            sizes=[int(v) for v in sizes.split(",") if v.strip()],
            seed=seed,
            console=console,
            **parse_overrides(ctx.args),
        )


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="run folders"),
    out: Path | None = typer.Option(None, help="also write the table as this CSV (and .html beside it)"),
    sort: str = typer.Option("", help="column to sort by (default: test accuracy, or val accuracy)"),
) -> None:
    """Runs side by side: backbone, sizes, parameters, epochs, time, speed, accuracy, macro-F1, ECE."""
    with _user_errors():
        _print_comparison(runs, sort=sort, out=out)


def _print_comparison(paths: list[Path], *, sort: str, out: Path | None) -> None:
    from rich.table import Table

    from imagefit.report.compare import COLUMNS, compare

    rows = compare(paths, sort=sort, out=out)
    table = Table(title="imagefit compare")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="left" if column in ("run", "model") else "right")
    for row in rows:
        table.add_row(*[Path(row[c]).name if c == "run" else str(row[c]) for c in COLUMNS])
    screen = Console(soft_wrap=True)
    (screen if screen.is_terminal else Console(soft_wrap=True, width=220)).print(table)  # a log gets it whole
    if out is not None:
        console.print(f"table: {out} and {out.with_suffix('.html')}", highlight=False)


@app.command()
def ensemble(
    runs: list[Path] = typer.Argument(..., help="run folders trained on the same split"),
    out: Path = typer.Option(..., help="ensemble folder to write"),
    method: str = typer.Option("weighted", help="mean | weighted (fitted on val log loss) | greedy (Caruana)"),
) -> None:
    """Average runs' probabilities with weights fitted on their shared validation split."""
    from imagefit.evaluation.ensembles import make_ensemble

    with _user_errors():
        made = make_ensemble(runs, out=out, method=method)
        weights = ", ".join(f"{m.name} {w:.2f}" for m, w in zip(made.members, made.weights, strict=True))
        _print_ensemble_figures(made)
        console.print(f"weights: {weights}", highlight=False)
        console.print(f"ensemble folder: {made.path}", highlight=False)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="run folder"),
    data: Path | None = typer.Argument(None, help="other data with the same classes (default: the run's val/test)"),
    split: str | None = typer.Option(None, help="only this split: val or test (or train/val/test of DATA)"),
    tta_n: int | None = typer.Option(None, help="test-time views to average (default: the run's choice; 1 = none)"),
    unknown: bool = typer.Option(False, help="DATA may hold classes the run never saw: measure how they are flagged"),
) -> None:
    """Accuracy, balanced accuracy, macro-F1, top-5, log loss, calibration and per-class figures; writes CSVs."""
    with _user_errors():
        _check_run(run)
        if data is not None:
            _check_data(data)
        from imagefit.evaluation.evaluator import evaluate as evaluate_run
        from imagefit.evaluation.summaries import print_evaluation

        print_evaluation(evaluate_run(run, data, split=split, tta_n=tta_n, unknown=unknown), console)


@app.command()
def predict(
    model: Path = typer.Argument(..., help="run folder, or an exported .onnx model"),
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
) -> None:
    """Predict images with a run or an .onnx model and write an Id,Category CSV."""
    with _user_errors():
        if out.exists() and not overwrite:  # before the prediction pass, not after it
            raise UserError(f"{out} exists. Pass --overwrite or another --out")
        _check_model_path(model)
        _check_inputs(inputs)
        from imagefit.data.inventory import listing
        from imagefit.data.sources import locator_name
        from imagefit.prediction.loading import predict as predict_images
        from imagefit.prediction.output import write_csv

        predictions = predict_images(model, inputs, tta=tta, tta_n=tta_n, batch_size=batch_size)
        if predictions.skipped:
            shown = [f"{locator_name(p)} ({why})" for p, why in predictions.skipped]
            warning = listing(f"skipped {len(predictions.skipped)} unreadable files", shown)
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        write_csv(predictions, out, full=full, overwrite=overwrite, unknown_label=unknown_label)
        if len(predictions.paths) <= SHOW_PREDICTIONS:
            for line in predictions.top_k_lines(3):
                print(line)
        console.print(f"{len(predictions.paths)} predictions written to {out}", highlight=False)


@app.command()
def explain(
    run: Path = typer.Argument(..., help="run folder"),
    images: list[Path] = typer.Argument(..., help="image files, folders or .zip files"),
    out: Path | None = typer.Option(None, help="folder for the PNG overlays (default RUN/explain)"),
    target: str | None = typer.Option(None, help="class to explain (default: the predicted one)"),
) -> None:
    """Grad-CAM heat maps of where the model looks, saved as PNG overlays."""
    with _user_errors():
        _check_run(run)
        _check_inputs(images)
        from imagefit.prediction.gradcam import explain as explain_images
        from imagefit.runs import RunFiles

        explanations = explain_images(run, images, out_dir=out, target=target)
        console.print(
            f"{len(explanations)} Grad-CAM overlays written to {out or RunFiles(run).explain}", highlight=False
        )


@app.command()
def report(run: Path = typer.Argument(..., help="run folder")) -> None:
    """Write RUN/report.html: summary, curves, confusion matrix, per-class table, mistakes, Grad-CAM, calibration."""
    with _user_errors():
        _check_run(run)
        from imagefit.report.writer import write_report

        console.print(f"report: {write_report(run)}", highlight=False)


@app.command()
def export(
    run: Path = typer.Argument(..., help="run folder"),
    format: str = typer.Option("onnx", help="onnx (the only format for now)"),
    out: Path | None = typer.Option(None, help="output .onnx path (default RUN/model.onnx)"),
    overwrite: bool = typer.Option(False, help="replace OUT if it exists"),
) -> None:
    """Export the model to ONNX with its labels and preprocessing beside it as JSON."""
    with _user_errors():
        if format != "onnx":
            raise UserError(f"--format {format} is not supported; use --format onnx")
        _check_run(run)
        from imagefit.export.onnx import export_onnx

        console.print(f"exported: {export_onnx(run, out=out, overwrite=overwrite)}", highlight=False)


@app.command()
def audit(
    data: Path = typer.Argument(..., help="folder, pre-split folders, CSV or .zip, as for train"),
    run: Path | None = typer.Option(None, help="embed with this trained run's model"),
    out: Path | None = typer.Option(None, help="folder for audit.json and audit.html (default audits/<data>)"),
    write_clean: Path | None = typer.Option(None, help="write a path,label,split CSV without duplicates and leaks"),
    embeddings: bool = typer.Option(True, help="run the model-based checks (near duplicates, labels, outliers)"),
    overwrite: bool = typer.Option(False, help="replace an existing --write-clean file"),
) -> None:
    """Find what is wrong with a dataset: corrupt files, duplicates, leakage, label errors, outliers, imbalance."""
    with _user_errors():
        _check_data(data)
        if run is not None:
            _check_run(run)
        from imagefit.audit import audit as audit_data

        audit_data(
            data, run=run, out=out, write_clean=write_clean, embeddings=embeddings, console=console, overwrite=overwrite
        )


cache_app = typer.Typer(help="The on-disk cache of features and embeddings ($IMAGEFIT_CACHE, ~/.cache/imagefit).")
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info() -> None:
    """List what the cache holds: one space per model, preprocessing and augmentation, with its size."""
    from imagefit.data.cache import VectorStore, limit_bytes

    store = VectorStore()
    spaces = store.info()
    for space in spaces:
        print(f"{space.kind or '-':<11} {space.rows:>8} rows {space.bytes / 1e6:>9.1f} MB  {space.space}")
    total = sum(s.bytes for s in spaces) / 1e9
    print(f"{len(spaces)} spaces, {total:.2f} GB of {limit_bytes() / 1e9:.1f} GB ($IMAGEFIT_CACHE_GB) in {store.path}")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete the cache; features and embeddings are computed again when next needed."""
    from imagefit.data.cache import VectorStore

    store = VectorStore()
    print(f"cleared {store.clear() / 1e6:.1f} MB from {store.path}")


@app.command("lr-find", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lr_find(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="data, as for train"),
    out: Path = typer.Option(Path("lr-find.png"), help="where the loss-against-learning-rate plot goes"),
    steps: int = typer.Option(100, help="steps of the range test"),
) -> None:
    """Learning-rate range test on the whole network (Lightning's lr_find); says which rate to fine-tune at."""
    with _user_errors():
        _check_data(data)
        from imagefit.training.lr_find import lr_find as range_test

        _quiet_lightning()
        found = range_test(data, out=out, steps=steps, console=console, **parse_overrides(ctx.args))
        if found.suggestion is None:
            console.print(f"no clear suggestion (the loss never fell steadily); see {found.plot}", highlight=False)
            return
        console.print(
            f"suggested fine-tuning learning rate {found.suggestion:.2e}: imagefit train {data} "
            f"--finetune-lr-ratio {found.ratio:.3g}   (plot: {found.plot})",
            highlight=False,
        )


@app.command()
def refit(
    run: Path = typer.Argument(..., help="a finished run folder"),
    out: Path | None = typer.Option(None, help="the new run folder (default RUN-refit)"),
) -> None:
    """Train the run's recipe again on its train + val images, for the epochs it kept (AutoGluon's refit_full)."""
    with _user_errors():
        _check_run(run)
        from imagefit.training.pipeline import refit as refit_run

        _quiet_lightning()
        done = refit_run(run, out=out, console=console)
        test = done.metrics.get("test")
        said = f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}" if test else "no test split"
        console.print(f"refit: {done.path} ({said})", highlight=False)


@app.command("zero-shot")
def zero_shot(
    images: list[Path] = typer.Argument(..., help="image files, folders or zips (class folders: accuracy is said)"),
    classes: str = typer.Option("", help="class names, comma-separated (default: DATA's class folders)"),
    model: str = typer.Option("ViT-B-32", help="open_clip model name"),
    pretrained: str = typer.Option(
        "laion2b_s34b_b79k", help="open_clip weights tag, or a checkpoint file; none: random"
    ),
    model_config: Path | None = typer.Option(None, help="an open_clip model config (JSON) to register first"),
    out: Path = typer.Option(Path("zero-shot.csv"), help="CSV to write (Id,Category)"),
    full: bool = typer.Option(False, help="add path, confidence and the top-3 classes"),
    overwrite: bool = typer.Option(False, help="replace OUT if it exists"),
) -> None:
    """Classify images by class names alone with CLIP (open_clip); no training."""
    from imagefit.models.zeroshot import class_names
    from imagefit.prediction.output import write_csv
    from imagefit.prediction.zeroshot import zero_shot as classify

    with _user_errors():
        if out.exists() and not overwrite:
            raise UserError(f"{out} exists. Pass --overwrite or another --out")
        if model_config is not None:
            import open_clip

            open_clip.add_model_config(str(model_config))
        labelled = _labelled(images)
        names = class_names(classes) if classes else sorted({s.label for s in labelled})
        if len(names) < 2:
            raise UserError("no class names: pass --classes 'cat,dog' or a folder of class folders")
        predictions = classify(images, names, model=model, pretrained=None if pretrained == "none" else pretrained)
        write_csv(predictions, out, full=full, overwrite=overwrite)
        truth = {s.path: s.label for s in labelled}
        pairs = zip(predictions.paths, predictions.labels, strict=True)
        scored = [(label, truth[p]) for p, label in pairs if p in truth]
        if scored:
            accuracy = sum(a == b for a, b in scored) / len(scored)
            console.print(f"accuracy on the {len(scored)} labelled images: {accuracy:.4f}", highlight=False)
        console.print(f"{len(predictions.paths)} predictions written to {out}", highlight=False)


def _labelled(images: list[Path]) -> list:
    """The samples of a single folder of class folders, else none (plain images are not labelled)."""
    from imagefit.data import find_samples

    if len(images) != 1 or not images[0].is_dir():
        return []
    try:
        return find_samples(images[0]).samples
    except UserError:
        return []


@app.command("add-class")
def add_class(
    run: Path = typer.Argument(..., help="run folder"),
    name: str = typer.Argument(..., help="the new class"),
    images: list[Path] = typer.Argument(..., help="1-20 example images (files, folders or a zip)"),
    out: Path = typer.Option(..., help="the new run folder (a copy of RUN that also knows NAME)"),
) -> None:
    """Teach a run a new class from a few examples, without retraining (weights imprinted in the head)."""
    with _user_errors():
        _check_run(run)
        _check_inputs(images)
        from imagefit.training.add_class import add_class as add_new_class

        grown = add_new_class(run, name, images, out=out)
        figures = grown.metrics.get("val", {})
        said = f"; val accuracy on the old classes {figures['accuracy']:.4f}" if figures else ""
        console.print(f"{grown.path}: {len(grown.classes)} classes, '{name}' added{said}", highlight=False)


@app.command()
def serve(
    model: Path = typer.Argument(..., help="run folder, or an exported .onnx model"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback unless you choose otherwise)"),
    port: int = typer.Option(8000, help="port"),
    workers: int = typer.Option(1, help="server processes"),
    max_batch: int = typer.Option(32, help="pictures a batch may gather from concurrent requests"),
    max_wait_ms: float = typer.Option(10.0, help="longest wait for a batch to fill, after its first picture"),
    backend: str = typer.Option("auto", help="auto (ONNX Runtime, exported on first use) | onnx | torch"),
) -> None:
    """Serve a run over HTTP: POST /predict, POST /explain, GET /health, /metadata, /docs, and a page at /."""
    with _user_errors():
        _check_model_path(model)
        from imagefit.serving import serve as serve_model

        console.print(f"serving {model} on http://{host}:{port}/ (Ctrl-C stops)", highlight=False)
        serve_model(
            model, host=host, port=port, workers=workers, max_batch=max_batch, max_wait_ms=max_wait_ms, backend=backend
        )


@app.command()
def version() -> None:
    """Print the imagefit version."""
    from imagefit import __version__

    print(__version__)


def _check_run(run: Path) -> None:
    from imagefit.runs import check_run_folder

    check_run_folder(run)


def _check_data(data: Path) -> None:
    from imagefit.data.sources import check_data_path

    check_data_path(data)


def _check_model_path(model: Path) -> None:
    from imagefit.prediction.loading import check_model_path

    check_model_path(model)


def _check_inputs(inputs: list[Path]) -> None:
    from imagefit.prediction.inputs import check_inputs

    check_inputs(list(inputs))


def _quiet_lightning() -> None:
    """Hide Lightning's start-up notes (GPU/TPU availability, logger tips): noise in a command's output.

    Called after Lightning is imported, since its import sets its loggers to INFO.
    """
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # a resumed run
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")  # small sets: no harm


def main() -> None:
    app()


if __name__ == "__main__":
    main()
