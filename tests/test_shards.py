"""`imagefit shard DATA OUT`: LitData shards that every command reads as the dataset they came from."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import TINY, make_class_folders, zip_folder
from typer.testing import CliRunner

import imagefit
from imagefit.cli import app
from imagefit.data.decode import read_bytes
from imagefit.data.sources import find_samples, locator_name

pytest.importorskip("litdata", reason="litdata is not installed: pip install -e '.[test]'")


def _shard(data, out):
    result = CliRunner().invoke(app, ["shard", str(data), str(out)])
    assert result.exit_code == 0, result.output
    return result.output


def test_shards_hold_every_image_its_label_split_and_name(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=5, split="train")
    make_class_folders(data, per_class=3, split="val", first_seed=50)
    (data / "train" / "red" / "broken.jpg").write_bytes(b"not an image")
    output = _shard(data, tmp_path / "shards")
    assert "1 unreadable files left out" in output and "16 images" in output
    assert (tmp_path / "shards" / "index.json").is_file() and list((tmp_path / "shards").glob("*.bin"))
    original = [s for s in find_samples(data).samples if "broken" not in s.path]
    sharded = find_samples(tmp_path / "shards").samples
    assert [(s.label, s.split) for s in sharded] == [(s.label, s.split) for s in original]
    assert [locator_name(s.path) for s in sharded] == [locator_name(s.path) for s in original]
    assert sharded[0].path.split("::")[1] == "00000000/train/blue/000.jpg"
    assert all(read_bytes(a.path) == read_bytes(b.path) for a, b in zip(sharded, original, strict=True))


def test_a_zip_shards_with_its_member_names(tmp_path):
    folder = make_class_folders(tmp_path / "f", per_class=3)
    _shard(zip_folder(folder, tmp_path / "d.zip", root_name="top"), tmp_path / "shards")
    names = [s.path.split("::")[1].split("/", 1)[1] for s in find_samples(tmp_path / "shards").samples]
    assert names[0] == "top/blue/000.jpg" and len(names) == 6


def test_training_from_shards_is_training_from_the_folder(tmp_path):
    data = make_class_folders(tmp_path / "colours", per_class=10)
    _shard(data, tmp_path / "shards")
    runs = {}
    for name, source in (("folder", data), ("shards", tmp_path / "shards")):
        runs[name] = tmp_path / "runs" / name
        imagefit.train(source, out=runs[name], epochs=2, frozen_epochs=1, **TINY)

    def split_rows(run):
        with open(run / "split.csv", newline="") as handle:
            return sorted((locator_name(r["path"]), r["label"], r["split"]) for r in csv.DictReader(handle))

    assert split_rows(runs["shards"]) == split_rows(runs["folder"])  # the same split carved, by the same seed
    metrics = {name: json.loads((run / "metrics.json").read_text())["val"] for name, run in runs.items()}
    assert metrics["shards"]["accuracy"] == metrics["folder"]["accuracy"]
    assert metrics["shards"]["log_loss"] == pytest.approx(metrics["folder"]["log_loss"], abs=1e-4)


def test_a_used_folder_is_refused_in_one_line(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=2)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    result = CliRunner().invoke(app, ["shard", str(data), str(tmp_path / "used")])
    assert result.exit_code == 2 and "is not an empty folder" in result.output
    assert len(result.output.strip().splitlines()) == 1
