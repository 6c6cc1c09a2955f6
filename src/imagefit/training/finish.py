"""Stage `finish`: what a trained model still needs before it is a run: prediction settings or thresholds chosen
on val, the unknown index, the evaluation, the competition's submission, the report and the summary.

It works on the trained model in memory (loaded once from the run folder when a resumed run starts here),
and each fact it chooses goes into config.json through the run's `ConfigRecord`.
"""

from __future__ import annotations

import csv
from collections import Counter

from rich.console import Console

from imagefit import runs
from imagefit.config import parse_duration
from imagefit.errors import UserError
from imagefit.evaluation.evaluator import evaluate
from imagefit.evaluation.priors import class_priors
from imagefit.evaluation.priors import describe as describe_adjustment
from imagefit.models.trained import load_trained, shift_logits
from imagefit.prediction.batches import predict_with
from imagefit.prediction.openset import INDEX_SIZE
from imagefit.prediction.output import write_csv
from imagefit.prediction.predictors import TorchPredictor
from imagefit.report.writer import write_report
from imagefit.tasks.multi import THRESHOLD_FLOOR, best_thresholds
from imagefit.training.callbacks import release_memory
from imagefit.training.engine import on_gpu
from imagefit.training.fallback import keep_pixel_run, pixels_won
from imagefit.training.finish_plan import FinishBudget, FinishCounts
from imagefit.training.plan import Plan, StageFn
from imagefit.training.polish import choose_inference, describe, fit_unknown
from imagefit.training.refit import mark_val_as_training
from imagefit.training.summary import print_summary


def finish(plan: Plan, console: Console, *, report: bool, notify: StageFn, finished: bool = False, model=None):
    """Evaluate the trained model and write the report (what of it is missing, on resume); print the summary.

    MODEL is the trained model in memory; None loads it from the run folder (a resumed run).
    """
    files = plan.files
    left = after_evaluation_left(files) if finished else []
    if finished and nothing_left(files, report=report):
        raise UserError(f"{plan.run_dir} has finished (model, metrics and report are written); nothing to resume")
    release_memory()  # training's peak is behind: evaluation starts from what is in use
    if not finished:
        notify("evaluate")
        _evaluate(plan, console, model)
    elif left:  # interrupted between the evaluation and the steps that follow it
        _after_evaluation(plan, console, left, None, device=_device(plan))
    if report:
        notify("report")
        write_report(plan.run_dir)
    run = runs.load_run(plan.run_dir)
    print_summary(run, console)
    return run


def nothing_left(files: runs.RunFiles, *, report: bool) -> bool:
    """Whether a run folder has finished everything a resume would do (its report too, when REPORT)."""
    if files.stage() != "finished" or after_evaluation_left(files):
        return False
    return files.report.exists() or not report


def _evaluate(plan: Plan, console: Console, model) -> None:
    """Choose what is chosen on val, evaluate val and test, and predict the unlabelled images."""
    device = _device(plan)
    record = runs.ConfigRecord(plan.files)
    run = runs.load_run(plan.run_dir)
    model = model if model is not None else load_trained(run)
    config = record.values()
    budget = finish_budget(plan, run)
    chosen = run.task.chosen_on_val  # thresholds a label, or the prediction settings (temperature, views, size)
    if chosen == "thresholds" and chosen not in config:
        choose_thresholds(run, model, console, device)
    elif chosen == "inference" and chosen not in config:
        tune = plan.recipe.predict.tune_inference
        if tune or _adjusting(run):  # --no-tune-inference: the logit shift is still chosen
            choose_prediction_settings(run, model, console, device, budget, tune=tune)
    if budget is not None and budget.said():
        console.print(budget.said(), highlight=False)
    index_size = budget.work.index_size if budget is not None and budget.work is not None else INDEX_SIZE
    if plan.recipe.predict.unknown_index and not record.has("unknown") and index_size:
        add_unknown_index(runs.load_run(plan.run_dir), model, device, seed=plan.recipe.data.seed, size=index_size)
    run = runs.load_run(plan.run_dir)  # with what was chosen on val
    predictor = TorchPredictor.for_run(run, model, device=device)
    evaluate(plan.run_dir, device=device, predictor=predictor)
    _after_evaluation(plan, console, after_evaluation_left(plan.files), predictor, device=device)


def _device(plan: Plan) -> str:
    return "cuda" if on_gpu(plan.recipe) else "cpu"


def after_evaluation_left(files: runs.RunFiles) -> list[str]:
    """What an evaluated run still lacks of the steps after its evaluation, in their order: 'pixels' (the raw-pixel
    run that won on val), 'refit' (a refit's val figures moved aside), 'submission' (the unlabelled test images)."""
    config, metrics = runs.read_json(files.config), runs.read_json(files.metrics)
    left = ["pixels"] if pixels_won(config, metrics) and not files.raw_pixels.exists() else []
    left += ["refit"] if config.get("refit_of") and "val" in metrics else []
    return left + (["submission"] if files.unlabelled.exists() and not files.submission.exists() else [])


def _after_evaluation(plan: Plan, console: Console, left: list[str], predictor: TorchPredictor | None, *, device: str):
    """The steps of LEFT (after_evaluation_left); PREDICTOR None loads the kept model if the submission needs it."""
    if "pixels" in left:
        keep_pixel_run(runs.load_run(plan.run_dir), console)
    if "refit" in left:
        mark_val_as_training(plan.files)
    if "submission" in left:
        if predictor is None:
            run = runs.load_run(plan.run_dir)
            predictor = TorchPredictor.for_run(run, load_trained(run), device=device)
        predict_unlabelled(plan.files, predictor, console)


def predict_unlabelled(files: runs.RunFiles, predictor: TorchPredictor, console: Console) -> None:
    """Id,Category predictions of the unlabelled test images into submission.csv (the competition layout)."""
    if not files.unlabelled.exists():
        return
    predictions = predict_with(predictor, unlabelled_paths(files))
    write_csv(predictions, files.submission, overwrite=True)
    skipped = f" ({len(predictions.skipped)} unreadable skipped)" if predictions.skipped else ""
    console.print(
        f"submission: {files.submission} ({len(predictions.paths)} rows, Id,Category){skipped}", highlight=False
    )


def unlabelled_paths(files: runs.RunFiles) -> list[str]:
    """The run's unlabelled images (the competition layout's test/), in the order they were found; [] if none."""
    if not files.unlabelled.exists():
        return []
    with files.unlabelled.open(newline="", encoding="utf-8") as handle:
        return [row["path"] for row in csv.DictReader(handle)]


def finish_budget(plan: Plan, run: runs.Run) -> FinishBudget | None:
    """What the finish of a --time-limit run may spend (None without a limit): the time left, the images it passes."""
    if not plan.recipe.schedule.time_limit:
        return None
    counts = Counter(s.split for s in run.split())
    return FinishBudget(
        deadline=plan.started + parse_duration(plan.recipe.schedule.time_limit),
        counts=FinishCounts(counts["train"], counts["val"], counts["test"], len(unlabelled_paths(plan.files))),
        index_size=INDEX_SIZE if plan.recipe.predict.unknown_index else 0,
    )


def add_unknown_index(run: runs.Run, model, device: str, *, seed: int, size: int = INDEX_SIZE) -> None:
    """The training embeddings (up to SIZE) that flag unknown images, and the threshold chosen on val, into the run
    folder.

    A refit's val images are training images: its threshold comes from the index's leave-one-out scores.
    """
    samples = run.split()
    with_val = not run.config.get("refit_of")
    index, facts = fit_unknown(
        model,
        run.inference,
        [s for s in samples if s.split == "train"],
        [s for s in samples if s.split == "val"] if with_val else None,
        run.classes,
        device=device,
        seed=seed,
        size=size,
    )
    index.save(run.path / facts["index"])
    runs.ConfigRecord(run.files).set_unknown(facts)


def choose_thresholds(run: runs.Run, model, console: Console, device: str) -> None:
    """Multi-label: one threshold a label, the best val F1 (at least THRESHOLD_FLOOR), into config.json."""
    val = [s for s in run.split() if s.split == "val"]
    predictions = predict_with(TorchPredictor.for_run(run, model, device=device), [s.path for s in val])
    truth = {s.path: s.label for s in val}
    rows = run.task.targets([truth[p] for p in predictions.paths], run.classes)
    chosen = best_thresholds(predictions.probabilities, rows)
    thresholds = {name: float(t) for name, t in zip(run.classes, chosen, strict=True)}
    runs.ConfigRecord(run.files).set_thresholds(thresholds)
    console.print(
        f"thresholds chosen on val for the best F1 of each label (at least {THRESHOLD_FLOOR}): "
        + ", ".join(f"{k} {v:.2f}" for k, v in thresholds.items()),
        highlight=False,
    )


def choose_prediction_settings(
    run: runs.Run, model, console: Console, device: str, budget: FinishBudget | None = None, *, tune: bool = True
) -> None:
    """Evaluation size, mirror TTA and temperature chosen on val (within BUDGET), into config.json, one line said.

    A run that meets imbalance by logit adjustment has the shift chosen with them; it goes into MODEL's bias.
    Without TUNE (`--no-tune-inference`) only that shift is chosen, at the training size with one view, and kept.
    """
    samples = run.split()
    val = [s for s in samples if s.split == "val"]
    train = [s.label for s in samples if s.split == "train"]
    priors = class_priors(train, run.classes) if _adjusting(run) else None
    inference, candidates, adjustment = choose_inference(
        model,
        run.train_preprocess,
        val,
        run.classes,
        mirror=tune and run.recipe.augment.hflip,
        device=device,
        budget=budget if tune else None,
        latency=run.recipe.predict.latency or not tune,
        priors=priors,
    )
    if not candidates:
        return
    if tune:
        runs.ConfigRecord(run.files).set_inference(inference.to_dict(), candidates, adjustment)
    elif adjustment is not None:
        runs.ConfigRecord(run.files).set_adjustment(adjustment)
    if adjustment is not None:
        shift_logits(model, adjustment["offsets"])
        console.print(describe_adjustment(adjustment), highlight=False)
    if tune:
        console.print(describe(inference, candidates, run.train_preprocess.size), highlight=False)


def _adjusting(run: runs.Run) -> bool:
    """Whether the run meets imbalance by logit adjustment and its shift is still to be chosen."""
    return run.config.get("imbalance_handling") == "adjust" and "prior_adjustment" not in run.config
