"""imagefit tune: a seeded study on SQLite that survives a killed worker, pruning, one-line database errors."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import TINY, make_class_folders

from imagefit.errors import UserError
from imagefit.tuning.study import tune

OPTIONS = {**{k: v for k, v in TINY.items() if k != "lr"}, "epochs": 5, "patience": 100}


def _data(tmp_path):
    return make_class_folders(tmp_path / "d", per_class=10)


KILLER = """
import functools, os, signal, sys
import imagefit.training.pipeline
from imagefit.tuning.study import tune
train = imagefit.training.pipeline.train
def killing(*args, out=None, **kwargs):
    if out is not None and out.name == "trial-1":  # the second trial dies in its head phase
        kwargs["on_stage"] = lambda stage: stage == "head" and os.kill(os.getpid(), signal.SIGKILL)
    return train(*args, out=out, **kwargs)
imagefit.training.pipeline.train = killing
tune(sys.argv[1], trials=3, studies_dir=sys.argv[2], **{OPTIONS})
"""


def test_a_study_resumes_after_a_killed_worker_and_reaches_the_same_best_trial(tmp_path):
    data = _data(tmp_path)
    reference = tune(data, trials=3, studies_dir=tmp_path / "once", **OPTIONS)
    script = KILLER.replace("{OPTIONS}", repr(OPTIONS))
    killed = subprocess.run(
        [sys.executable, "-c", script, str(data), str(tmp_path / "twice")], capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -9, killed.stderr[-1500:]
    resumed = tune(data, trials=3, studies_dir=tmp_path / "twice", **OPTIONS)
    states = [row["state"] for row in resumed.trials]
    assert states.count("complete") + states.count("pruned") == 3 and states.count("fail") == 1
    assert resumed.best_value == pytest.approx(reference.best_value)
    best = {row["trial"]: row["params"] for row in resumed.trials}[resumed.best_trial]
    assert best == {row["trial"]: row["params"] for row in reference.trials}[reference.best_trial]
    assert (tmp_path / "twice" / "d" / "best" / "model.safetensors").exists()
    assert "Optimisation history" in (tmp_path / "twice" / "d" / "study.html").read_text()


def test_a_failing_trial_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    import imagefit.training.pipeline

    train = imagefit.training.pipeline.train

    def out_of_memory_once(*args, out=None, **kwargs):
        if out is not None and out.name == "trial-0":
            raise RuntimeError("CPU out of memory: tried to allocate 9 GB")
        return train(*args, out=out, **kwargs)

    monkeypatch.setattr(imagefit.training.pipeline, "train", out_of_memory_once)
    study = tune(_data(tmp_path), trials=2, studies_dir=tmp_path / "s", **{**OPTIONS, "epochs": 2})
    rows = {row["trial"]: row for row in study.trials}
    assert rows[0]["state"] == "fail" and "out of memory" in rows[0]["note"]
    assert rows[1]["state"] == "complete" and study.best_trial == 1
    assert "out of memory" in (tmp_path / "s" / "d" / "study.html").read_text()


def test_pruning_stops_a_bad_trial(tmp_path):
    import optuna

    from imagefit.tuning.study import _run_trial

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(upper=-1.0))
    trial = study.ask()
    plan = {
        "folder": str(tmp_path),
        "data": str(_data(tmp_path)),
        "overrides": {**OPTIONS, "epochs": 6},
        "models": [],
        "sizes": [],
        "metric": "macro_f1",
    }
    _run_trial(study, trial, plan)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    history = (tmp_path / "trial-0" / "history.csv").read_text().strip().splitlines()
    assert len(history) - 1 < 6, "the pruned trial stopped before its last epoch"


def test_an_unreachable_database_is_one_line_with_the_password_hidden(tmp_path):
    with pytest.raises(UserError, match=r"cannot open the study database postgresql://me:\*\*\*@127.0.0.1:9/none"):
        tune(_data(tmp_path), trials=1, studies_dir=tmp_path, storage="postgresql://me:secret@127.0.0.1:9/none")


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture
def postgres(tmp_path):
    """A private PostgreSQL server on a Unix socket in tmp_path, started for this test and stopped after it."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql; .ci/run does)")
    # Not under tmp_path: PostgreSQL's user must reach it, and a Unix socket path must stay short.
    folder = Path(tempfile.mkdtemp(prefix="imagefit-pg-"))
    folder.chmod(0o755)
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: its own user runs it
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def pg(*args):
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(str(binaries / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "--auth=trust")
    options = f"-k {folder} -c listen_addresses='' -c max_connections=40"
    pg(str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        pg(str(binaries / "createdb"), "-h", str(folder), "-U", "postgres", "studies")
        yield f"postgresql://postgres@/studies?host={folder}"
    finally:
        pg(str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_on_a_real_postgresql_server(tmp_path, postgres):
    result = tune(_data(tmp_path), trials=4, workers=2, storage=postgres, studies_dir=tmp_path / "s", **OPTIONS)
    finished = [row for row in result.trials if row["state"] in ("complete", "pruned")]
    assert len(finished) >= 4
    import optuna

    study = optuna.load_study(study_name="d", storage=postgres)
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2, "both workers ran trials"


WORKER = """
import sys
from imagefit.tuning.study import tune
tune(sys.argv[1], trials=4, study="shared", studies_dir=sys.argv[2], storage=sys.argv[3], **{OPTIONS})
"""


def test_two_workers_started_apart_share_one_journal_study_without_duplicate_trials(tmp_path):
    """`--storage journal:PATH`: two processes (as two machines with one shared file system) run one study."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    data, journal = _data(tmp_path), tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    script = WORKER.replace("{OPTIONS}", repr(OPTIONS))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(data), str(tmp_path / f"machine-{i}"), f"journal:{journal}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-1500:]
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), "no trial number twice, none skipped"
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 4
    assert {t.user_attrs["pid"] for t in finished} <= {w.pid for w in workers}


def test_a_journal_in_a_missing_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist; make it"):
        tune(_data(tmp_path), trials=1, studies_dir=tmp_path / "s", storage=f"journal:{tmp_path}/nowhere/x.log",
             **OPTIONS)  # fmt: skip
