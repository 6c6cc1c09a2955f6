"""The vector cache: concurrent writers, damage, a size bound, progress kept by a killed pass, the CLI."""

import multiprocessing
import subprocess
import sys

import numpy as np
import pytest
import torch

from imagefit.data.cache import VectorStore


def _writer(root, first):
    store = VectorStore(root)
    for i in range(first, first + 40):
        store.put("space", {f"h{i}": np.full(4, i, dtype=np.float32)}, kind="features")


def test_two_processes_writing_at_once_lose_no_rows(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(tmp_path, first)) for first in (0, 1000)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    got = VectorStore(tmp_path).get("space", [f"h{i}" for i in [*range(40), *range(1000, 1040)]])
    assert len(got) == 80 and float(got["h1039"][0]) == 1039.0


def test_a_store_locked_by_another_run_is_waited_for_and_never_taken_for_damage(tmp_path, monkeypatch):
    import sqlite3

    from imagefit.data import cache

    store = VectorStore(tmp_path)
    store.put("s", {"a": np.ones(3, dtype=np.float32)})
    monkeypatch.setattr(cache, "_WAIT_S", 0.2)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("PRAGMA journal_mode=DELETE")  # leave WAL, so that the next run has to switch back alone
    other.execute("BEGIN EXCLUSIVE")  # another run holds the file for the whole call
    try:
        with pytest.warns(UserWarning, match="could not be used"):
            store.put("s", {"b": np.ones(3, dtype=np.float32)})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not list(tmp_path.glob("vectors.damaged-*")), "a lock is not damage: nothing was set aside"
    assert list(store.get("s", ["a", "b"])) == ["a"], "what was stored stays; the locked write is recomputed later"


def test_a_damaged_store_is_set_aside_and_recomputed(tmp_path):
    store = VectorStore(tmp_path)
    store.put("s", {"a": np.ones(3, dtype=np.float32)})
    store.path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(UserWarning, match="damaged"):
        assert store.get("s", ["a"]) == {}
    store.put("s", {"a": np.ones(3, dtype=np.float32)})
    assert list(store.get("s", ["a"])) == ["a"]
    assert list(tmp_path.glob("vectors.damaged-*.sqlite")), "the damaged file is kept for a look"


def test_past_its_limit_the_least_recently_used_spaces_go(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEFIT_CACHE_GB", str(2 * 4000 * 4 / 1e9))  # room for two spaces of 4000 floats
    store = VectorStore(tmp_path)
    for name in ("old", "used", "new"):
        store.put(name, {"h": np.zeros(4000, dtype=np.float32)})
        if name == "used":
            store.get("old", ["h"])  # "old" is used again: "used" is now the least recently used
    assert sorted(s.space for s in store.info()) == ["new", "old"]


def test_an_interrupted_feature_pass_keeps_what_it_committed(tmp_path, monkeypatch):
    from conftest import make_class_folders

    from imagefit.config import Recipe
    from imagefit.data import scan
    from imagefit.models import build_classifier
    from imagefit.training import features

    data = make_class_folders(tmp_path / "d", per_class=6)
    inventory = scan(data)
    recipe = Recipe().override(model="test_efficientnet", pretrained=False, image_size=32)
    model, preprocess, _ = build_classifier(recipe.model, 2, pretrained=False)
    dataset = features.ViewDataset(
        inventory.samples,
        [inventory.hashes[s.path] for s in inventory.samples],
        preprocess,
        recipe.augment,
        views=1,
        seed=0,
    )
    monkeypatch.setattr(features, "COMMIT_EVERY", 4)
    calls = []

    class Stops(torch.nn.Module):
        def forward(self, images):
            calls.append(len(images))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return model.backbone(images)

    with pytest.raises(KeyboardInterrupt):
        features.extract_features(Stops(), dataset, name="n", batch_size=4, cache_dir=tmp_path / "c")
    kept = VectorStore(tmp_path / "c").get("n", dataset.hashes)
    assert len(kept) == 8, "the two finished batches of 4 were stored"


def test_cache_info_and_clear_from_the_command_line(tmp_path):
    VectorStore(tmp_path).put("features-x", {"h": np.zeros(10, dtype=np.float32)}, kind="features")
    env = {"IMAGEFIT_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    info = subprocess.run(
        [sys.executable, "-m", "imagefit.cli", "cache", "info"], capture_output=True, text=True, env=env
    )
    assert info.returncode == 0 and "features-x" in info.stdout and "1 spaces" in info.stdout
    cleared = subprocess.run(
        [sys.executable, "-m", "imagefit.cli", "cache", "clear"], capture_output=True, text=True, env=env
    )
    assert cleared.returncode == 0 and VectorStore(tmp_path).info() == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="SQLite error codes on exceptions need Python 3.11+")
def test_only_sqlites_busy_codes_count_as_a_lock_not_the_words_in_a_message(tmp_path):
    import sqlite3

    from imagefit.data.cache import _busy

    path = tmp_path / "x.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            sqlite3.connect(path, timeout=0).execute("SELECT * FROM t")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with pytest.raises(sqlite3.OperationalError) as missing:
        sqlite3.connect(path).execute("SELECT * FROM locked_busy_table")  # the words, not the state
    assert _busy(locked.value)
    assert not _busy(missing.value)
