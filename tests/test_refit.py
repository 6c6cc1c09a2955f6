"""imagefit refit: train + val, the kept number of epochs, the last one kept, the run's prediction settings."""

import json

from conftest import TINY, make_class_folders

import imagefit
from imagefit.training.refit import refit


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
