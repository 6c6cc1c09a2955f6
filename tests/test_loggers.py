"""Lightning's loggers passed through: CSV by default, MLflow against a local file store."""

import csv

from conftest import TINY, make_class_folders

import imagefit


def test_csv_logger_by_default_and_history_unchanged(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=8)
    run = imagefit.train(data, out=tmp_path / "run", epochs=3, frozen_epochs=1, report=False, **TINY)
    with (run.path / "logs" / "metrics.csv").open() as handle:
        logged = list(csv.DictReader(handle))
    assert any(row.get("val_loss") for row in logged), "Lightning's CSV logger saw the validation loss"
    assert (run.path / "history.csv").read_text().startswith("epoch,phase,lr,train_loss,val_loss")


def test_mlflow_logger_writes_to_a_local_store(tmp_path, monkeypatch):
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    data = make_class_folders(tmp_path / "d", per_class=8)
    imagefit.train(data, out=tmp_path / "run", epochs=3, frozen_epochs=1, logger="mlflow", report=False, **TINY)
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "imagefit"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "run" and "val_loss" in logged.data.metrics
