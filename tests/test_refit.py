"""imagefit refit: train + val, the kept number of epochs, the last one kept, the run's prediction settings."""

import io
import json

from conftest import TINY, make_class_folders
from rich.console import Console

import imagefit
import imagefit.runs
from imagefit.training.pipeline import refit, share_time_with_refit


def test_refit_trains_on_train_and_val_and_keeps_the_runs_prediction_settings(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=20)
    source = imagefit.train(data, out=tmp_path / "run", epochs=4, frozen_epochs=1, test_split=0.2, report=False, **TINY)
    done = refit(source.path)
    assert done.path == tmp_path / "run-refit"
    split = done.split()
    source_split = source.split()
    assert sum(s.split == "train" for s in split) == sum(s.split in ("train", "val") for s in source_split)
    assert {s.path for s in split if s.split == "test"} == {s.path for s in source_split if s.split == "test"}
    history = (done.path / "history.csv").read_text().strip().splitlines()[1:]
    assert len(history) == source.metrics["best_epoch"], "as many epochs as the run kept"
    assert done.metrics["best_epoch"] == len(history), "the last epoch is kept"
    config = json.loads((done.path / "config.json").read_text())
    assert config["inference"] == source.config["inference"] and config["refit_of"].endswith("run")
    assert "val" not in done.metrics and "val_in_training" in done.metrics and "test" in done.metrics
    assert config["unknown"]["threshold"] > 0


def test_train_with_refit_returns_the_refit_that_says_it_has_no_val_figure_of_its_own(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=20)
    console = Console(file=io.StringIO(), width=400)
    done = imagefit.train(data, out=tmp_path / "run", epochs=3, frozen_epochs=1, refit=True, console=console, **TINY)
    assert done.path == tmp_path / "run-refit"
    source = imagefit.runs.load_run(tmp_path / "run")
    assert source.recipe.schedule.refit, "the run's recipe records that a refit follows it"
    assert done.metrics["val_estimate"] == source.metrics["val"], "the run's val figures stand as the estimate"
    assert "val" not in done.metrics and not done.recipe.schedule.refit
    said = console.file.getvalue()
    assert said.count("no validation figure of its own") == 1 and "val (of the run refitted)" in said
    assert "the val figures printed while it trains are on images it trains on" in said
    page = (done.path / "report.html").read_text()
    assert "no validation figure of its own" in page and "val (of the run refitted)" in page


def test_a_time_limit_with_refit_gives_the_run_half_and_the_refit_the_rest():
    console = Console(file=io.StringIO(), width=400)
    overrides, total = share_time_with_refit({"time-limit": "10m", "refit": "true", "epochs": 8}, console)
    assert total == 600.0 and overrides == {"time-limit": "300s", "refit": "true", "epochs": 8}
    assert "300s for the run" in console.file.getvalue()
    unchanged = {"time_limit": "10m"}
    assert share_time_with_refit(unchanged, console) == (unchanged, 0.0), "no refit: the whole limit"


def test_a_run_interrupted_before_its_refit_resumes_with_the_refit(tmp_path, monkeypatch):
    import pytest

    from imagefit.errors import TrainingInterrupted, UserError
    from imagefit.training import pipeline

    data = make_class_folders(tmp_path / "d", per_class=20)
    real = pipeline.plan_refit

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the moment the run has finished and its refit is about to start

    monkeypatch.setattr(pipeline, "plan_refit", interrupted)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=f"--resume {out}`"):
        imagefit.train(data, out=out, epochs=3, frozen_epochs=1, refit=True, report=False, **TINY)
    assert (out / "metrics.json").exists() and not (tmp_path / "run-refit").exists()
    monkeypatch.setattr(pipeline, "plan_refit", real)
    done = imagefit.train(resume=out, report=False)
    assert done.path == tmp_path / "run-refit" and "val_in_training" in done.metrics
    assert done.config["refit_of"] == str(out.resolve())
    with pytest.raises(UserError, match="nothing to resume"):
        imagefit.train(resume=out, report=False)
