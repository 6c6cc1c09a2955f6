"""Commands over data: audit, shard, suggest, cache, zero-shot."""

from __future__ import annotations

from pathlib import Path

import typer

from imagefit.cli.app import app, check_data, check_inputs, check_run, console, user_errors
from imagefit.errors import UserError


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
    with user_errors():
        check_data(data)
        if run is not None:
            check_run(run)
        from imagefit.audit import audit as audit_data

        audit_data(
            data, run=run, out=out, write_clean=write_clean, embeddings=embeddings, console=console, overwrite=overwrite
        )


@app.command()
def shard(
    data: Path = typer.Argument(..., help="folder, pre-split folders, CSV or .zip, as for train"),
    out: str = typer.Argument(
        ..., help="a new folder for the shards, or an object-store URL (s3://bucket/prefix); then `imagefit train OUT`"
    ),
) -> None:
    """Write DATA as LitData shards (its split, classes and decode checks kept), read by train, audit, evaluate."""
    with user_errors():
        check_data(data)
        from imagefit.data.inventory import shard as shard_data

        sharded, inventory = shard_data(data, out)
        if inventory.skipped:
            console.print(f"[yellow]warning:[/] {len(inventory.skipped)} unreadable files left out", highlight=False)
        console.print(sharded.line(), highlight=False, soft_wrap=True)


@app.command()
def suggest(
    run: Path = typer.Argument(..., help="a run folder"),
    pool: list[Path] = typer.Argument(..., help="unlabelled image files, folders (recursive) or .zip files"),
    n: int = typer.Option(100, "--n", help="how many images to suggest"),
    out: Path = typer.Option(Path("to_label.csv"), help="CSV to write: path,suggested_label,confidence,reason"),
    overwrite: bool = typer.Option(False, help="replace OUT if it exists"),
    batch_size: int = typer.Option(32, help="images per batch"),
) -> None:
    """Which unlabelled images to label next: uncertain ones, spread over the run's embedding space; labelled images
    and their near duplicates skipped, images unlike every class listed apart (OUT-unknown.csv)."""
    with user_errors():
        if out.exists() and not overwrite:
            raise UserError(f"{out} exists. Pass --overwrite or another --out")
        check_run(run)
        check_inputs(pool)
        from imagefit.audit.suggest import suggest as suggest_images

        suggestions = suggest_images(run, pool, n=n, batch_size=batch_size)
        suggestions.write(out)
        for line in suggestions.lines(out):
            console.print(line, highlight=False)


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

    with user_errors():
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
