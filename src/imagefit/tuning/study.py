"""`imagefit tune`: an Optuna study over the recipe, each trial a normal run folder, on one fixed split.

    studies/NAME/study.db      the Optuna storage (SQLite) unless --storage names another (PostgreSQL, or
                               journal:PATH, Optuna's journal file on a shared file system)
    studies/NAME/split.csv     the split every trial trains and validates on
    studies/NAME/trial-K/      trial K's run folder
    studies/NAME/best/         a copy of the best trial's run folder
    studies/NAME/study.html    the trials, their parameters and figures, Optuna's history and importances

The sampler is TPE, seeded per trial number, so a study that is stopped (Ctrl-C, kill -9) and
started again asks the same questions: a trial that was cut off is marked failed and its
parameters are tried again first. Bad trials are pruned on val loss by Optuna's Lightning
callback. Trials that share the backbone, image size and augmentation share the phase-1 features.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from rich.console import Console

from imagefit import runs
from imagefit.errors import UserError
from imagefit.files import output_folder
from imagefit.tuning.summary import StudyResult, summarise

METRICS = {"macro_f1": "macro_f1", "accuracy": "accuracy"}
# Augmentation strengths a trial may pick: (smallest crop area, colour jitter). Three levels, so
# trials share at most three feature caches per backbone and size.
AUGMENTATION = {"light": (0.6, 0.1), "default": (0.35, 0.2), "strong": (0.2, 0.35)}


def suggest(trial, *, models: list[str], sizes: list[int], fixed: dict, epochs: int) -> dict:
    """Recipe overrides for one trial: the search space, less what the user fixed with a recipe option."""
    params: dict = {}
    if not {"crop_scale", "color_jitter"} & set(fixed):
        crop_scale, color_jitter = AUGMENTATION[trial.suggest_categorical("augmentation", list(AUGMENTATION))]
        params.update(crop_scale=crop_scale, color_jitter=color_jitter)
    space = {
        "lr": lambda: trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        "finetune_lr_ratio": lambda: trial.suggest_float("finetune_lr_ratio", 0.05, 1.0, log=True),
        "weight_decay": lambda: trial.suggest_float("weight_decay", 1e-4, 0.1, log=True),
        "label_smoothing": lambda: trial.suggest_float("label_smoothing", 0.0, 0.2),
        "mixup": lambda: trial.suggest_categorical("mixup", [0.0, 0.2]),
        "cutmix": lambda: trial.suggest_categorical("cutmix", [0.0, 1.0]),
        "frozen_epochs": lambda: trial.suggest_int("frozen_epochs", 1, max(1, min(4, epochs - 1))),
    }
    params.update({name: ask() for name, ask in space.items() if name not in fixed})
    if len(models) > 1 and "model" not in fixed:
        params["model"] = trial.suggest_categorical("model", models)
    if len(sizes) > 1 and "image_size" not in fixed:
        params["image_size"] = trial.suggest_categorical("image_size", sizes)
    return params


def tune(
    data: str | Path,
    *,
    trials: int = 20,
    study: str | None = None,
    studies_dir: str | Path = "studies",
    storage: str | None = None,
    time_limit: str = "",
    workers: int = 1,
    metric: str = "macro_f1",
    models: list[str] | None = None,
    sizes: list[int] | None = None,
    seed: int = 0,
    console: Console | None = None,
    **overrides,
) -> StudyResult:
    """Run (or continue) a study of TRIALS trials in all; the best trial is copied to studies/NAME/best."""
    import optuna

    from imagefit.config import parse_duration

    console = console or Console(stderr=True, soft_wrap=True)
    _check_options(metric=metric, trials=trials, workers=workers, models=models or [])
    name = study or runs.dataset_name(Path(data))
    folder = output_folder(Path(studies_dir) / name)
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    split = _fixed_split(Path(data), folder, overrides)
    optuna_study = _open_study(optuna, url, name)
    _retry_cut_off_trials(optuna, optuna_study)
    timeout = parse_duration(time_limit) or None
    plan = {
        "data": str(split),
        "folder": str(folder),
        "url": url,
        "name": name,
        "trials": trials,
        "timeout": timeout,
        "metric": metric,
        "models": models or [],
        "sizes": sizes or [],
        "seed": seed,
        "overrides": overrides,
    }
    if workers == 1:
        run_worker(plan)
    else:
        _run_workers(plan, workers)
    return summarise(optuna_study, folder, console)


def _check_options(*, metric: str, trials: int, workers: int, models: list[str]) -> None:
    from imagefit.models.factory import check_model_name

    if metric not in METRICS:
        raise UserError(f"--metric {metric} is not one of: {', '.join(METRICS)}")
    if trials < 1 or workers < 1:
        raise UserError("--trials and --workers must be at least 1")
    for model in models:
        check_model_name(model)


def _fixed_split(data: Path, folder: Path, overrides: dict) -> Path:
    """studies/NAME/split.csv: the data scanned and split once, so every trial sees the same val images."""
    from imagefit.config import Recipe
    from imagefit.data import assign_splits, scan, write_split

    target = runs.RunFiles(folder).split  # a study folder keeps its split as a run folder does
    if target.exists():
        return target
    recipe = Recipe().override(**{k: v for k, v in overrides.items() if k in ("val_split", "test_split", "seed")})
    inventory = scan(data)
    samples = assign_splits(
        inventory.samples, val_split=recipe.data.val_split, test_split=recipe.data.test_split, seed=recipe.data.seed
    )
    write_split(target, samples)
    return target


JOURNAL = "journal:"


def open_storage(url: str):
    """What Optuna opens for URL: a database URL as it is, or for `journal:PATH` a JournalStorage on the file PATH
    (Optuna's storage for a shared file system without a database server; workers append to one log, locked)."""
    if not url.startswith(JOURNAL):
        return url
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = Path(url[len(JOURNAL) :]).expanduser()
    if not path.parent.is_dir():
        raise UserError(f"--storage {url}: the folder {path.parent} does not exist; make it (a shared path) first")
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _open_study(optuna, url: str, name: str):
    """The study in URL (created if new); a one-line error naming the URL, password hidden, if unreachable."""
    try:
        return optuna.create_study(
            study_name=name, storage=open_storage(url), direction="maximize", load_if_exists=True
        )
    except ImportError as exc:
        raise UserError(
            f"no database driver for {_hide_password(url)} ({exc.__cause__ or exc}). For PostgreSQL: "
            "pip install 'imagefit[postgres]'"
        ) from None
    except Exception as exc:  # SQLAlchemy raises many kinds; all mean the database cannot be used
        if type(exc).__module__.startswith(("sqlalchemy", "optuna", "psycopg2")):
            raise UserError(
                f"cannot open the study database {_hide_password(url)} ({type(exc).__name__}). Check that the server "
                "runs and the URL, user and password are right, or leave --storage out for a local SQLite file"
            ) from None
        raise


def _hide_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _retry_cut_off_trials(optuna, study) -> None:
    """Trials left RUNNING by a worker of this machine that is gone: failed, and their parameters asked again."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid, owner = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
        if owner == host and pid and not _alive(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, "cut_off", True)
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_worker(plan: dict) -> None:
    """One worker: ask, train, tell, until the study holds `trials` finished trials or the time is up."""
    import time

    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=plan["name"], storage=open_storage(plan["url"]))
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    started = time.monotonic()
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    while True:
        finished = [t for t in study.get_trials(deepcopy=False, states=done) if not t.user_attrs.get("cut_off")]
        if len(finished) >= plan["trials"] or (plan["timeout"] and time.monotonic() - started > plan["timeout"]):
            return
        # Seeded by how many real trials came before: a study resumed after a cut-off asks the same questions.
        before = sum(1 for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("cut_off"))
        study.sampler = optuna.samplers.TPESampler(seed=plan["seed"] + before, n_startup_trials=5)
        trial = study.ask()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        _run_trial(study, trial, plan)


def _run_trial(study, trial, plan: dict) -> None:
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from imagefit.training.pipeline import train

    folder = Path(plan["folder"]) / f"trial-{trial.number}"
    if folder.exists():
        shutil.rmtree(folder)
    from imagefit.config import Recipe, fit_epochs

    fixed = {key.replace("-", "_").split(".")[-1]: value for key, value in plan["overrides"].items()}
    epochs = Recipe().override(**fit_epochs(plan["overrides"])[0]).schedule.epochs
    params = {
        **plan["overrides"],
        **suggest(trial, models=plan["models"], sizes=plan["sizes"], fixed=fixed, epochs=epochs),
    }
    try:
        run = train(
            plan["data"],
            out=folder,
            report=False,
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_loss")],
            console=Console(stderr=True, soft_wrap=True, quiet=True),
            **params,
        )
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    except (UserError, RuntimeError, ValueError, MemoryError) as exc:  # a bad combination: recorded, the study goes on
        trial.set_user_attr("failed_because", f"{type(exc).__name__}: {exc}"[:300])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    figures = run.metrics["val"]
    trial.set_user_attr("val_accuracy", figures["accuracy"])
    trial.set_user_attr("val_macro_f1", figures["macro_f1"])
    trial.set_user_attr("run", str(run.path))
    study.tell(trial, figures[METRICS[plan["metric"]]])


def _run_workers(plan: dict, workers: int) -> None:
    """K worker processes on this machine against the same storage (SQLite or a server)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_worker, args=(plan,)) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
