"""Shards in an object store: `imagefit shard DATA s3://bucket/prefix`, then `imagefit train s3://bucket/prefix`.

The store is a private S3 server (moto's) on loopback, started here over TLS with a certificate from a CA made
here and trusted through SSL_CERT_FILE / AWS_CA_BUNDLE, the way a user's S3-compatible server is reached through
AWS_ENDPOINT_URL (litdata reads and writes S3 through obstore and boto3, and obstore speaks HTTPS only).
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import TINY, make_class_folders
from s3_server import private_s3
from typer.testing import CliRunner

import imagefit
from imagefit.cli import app
from imagefit.data.cache import cache_root
from imagefit.data.decode import read_bytes
from imagefit.data.sources import find_samples, locator_name

pytest.importorskip("litdata", reason="litdata is not installed: pip install -e '.[test]'")
pytest.importorskip("moto.server", reason="moto's S3 server is not installed: pip install -e '.[test]'")
pytest.importorskip("cryptography.x509", reason="cryptography is not installed (it comes with moto)")


@pytest.fixture
def s3_bucket(tmp_path_factory, monkeypatch):
    """An empty bucket on a private S3 server over TLS on loopback; the environment set to reach it. Stopped after."""
    with private_s3(tmp_path_factory.mktemp("s3")) as environment:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        yield "s3://bucket"


def test_shards_written_to_an_object_store_train_as_the_folder_does(tmp_path, s3_bucket):
    data = make_class_folders(tmp_path / "colours", per_class=10)
    url = f"{s3_bucket}/colours"
    result = CliRunner().invoke(app, ["shard", str(data), url])
    assert result.exit_code == 0, result.output
    assert "20 images in 1 LitData chunk files" in result.output and url in result.output

    sharded, original = find_samples(url).samples, find_samples(data).samples
    assert sharded[0].path.startswith(f"{url}::00000000/")
    assert [(locator_name(s.path), s.label) for s in sharded] == [(locator_name(s.path), s.label) for s in original]
    assert all(read_bytes(a.path) == read_bytes(b.path) for a, b in zip(sharded, original, strict=True))
    assert list((cache_root() / "shards").rglob("index.json"))  # litdata caches under imagefit's own cache

    runs = {}
    for name, source in (("folder", data), ("store", url)):
        runs[name] = tmp_path / "runs" / name
        imagefit.train(source, out=runs[name], epochs=2, frozen_epochs=1, **TINY)
    # litdata's random reads from a URL fetch each item's bytes by range requests; imagefit caches whole chunks
    assert list((cache_root() / "shards").rglob("chunk-*.bin")), "the chunks are cached whole, not read item by item"
    config = json.loads((runs["store"] / "config.json").read_text())
    assert config["data"] == url

    def split_rows(run):
        with open(run / "split.csv", newline="") as handle:
            return sorted((locator_name(r["path"]), r["label"], r["split"]) for r in csv.DictReader(handle))

    assert split_rows(runs["store"]) == split_rows(runs["folder"])
    metrics = {name: json.loads((run / "metrics.json").read_text())["val"] for name, run in runs.items()}
    assert metrics["store"]["accuracy"] == metrics["folder"]["accuracy"]
    assert metrics["store"]["log_loss"] == pytest.approx(metrics["folder"]["log_loss"], abs=1e-4)


def test_a_prefix_that_holds_shards_or_none_is_said_in_one_line(tmp_path, s3_bucket):
    data = make_class_folders(tmp_path / "data", per_class=2)
    url = f"{s3_bucket}/once"
    assert CliRunner().invoke(app, ["shard", str(data), url]).exit_code == 0
    again = CliRunner().invoke(app, ["shard", str(data), url])
    assert again.exit_code == 2 and "already holds shards" in again.output
    assert len(again.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(app, ["train", f"{s3_bucket}/nothing-here", "--out", str(tmp_path / "run")])
    assert missing.exit_code == 2 and "imagefit-shards.json could not be read" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
